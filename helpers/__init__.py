"""Tested building blocks for the adversarial-examples course.

The modules read like the course's vocabulary, each one idea, each importing only the ones before it:
``data -> models -> attacks -> training -> evaluate -> plots``.  ``helpers.course`` (the instructor's build)
stands apart.  Conventions everywhere: images are float32 NHWC in [0, 1], labels int64, models return logits,
``eps`` is measured in pixel-value units of [0, 1].
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# TensorFlow's C++ start-up lines (oneDNN notice, "no CUDA drivers") go straight to file descriptor 2, ignore
# TF_CPP_MIN_LOG_LEVEL in current releases, and would clutter every notebook.  Import it once here with that
# descriptor pointed at /dev/null; Python-level errors still raise (and print) as usual.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "tensorflow" not in _sys.modules and _os.environ.get("COURSE_VERBOSE_TF") != "1":
    try:
        _saved = _os.dup(2)
    except OSError:  # no stderr descriptor at all: nothing to quieten
        _saved = None
    if _saved is not None:
        _null = _os.open(_os.devnull, _os.O_WRONLY)
        _os.dup2(_null, 2)
        try:
            import tensorflow as _tf  # noqa: F401
            _tf.config.list_physical_devices("GPU")  # the CUDA probe logs on first use: get it over with now
            # The attacks compile one tf.function per (model, configuration) on purpose; TensorFlow's "excessive
            # retracing" warning would misread that as a mistake.
            _tf.get_logger().setLevel("ERROR")
        finally:
            _os.dup2(_saved, 2)
            _os.close(_saved)
            _os.close(_null)
