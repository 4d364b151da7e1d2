"""``python -m helpers.course build|release …``: see ``helpers.course.cli``."""

import sys

from .cli import main

sys.exit(main())
