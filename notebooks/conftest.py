"""``pytest --nbval`` runs the series with ``RETRAIN``: each notebook's kernel starts with ``COURSE_RETRAIN=1``, so
every model comes from this machine's training (``helpers.modelcache`` skips ``data/shipped``), and the committed
outputs must still match.

In the README's test command (CI) the models were trained moments earlier, from scratch, by
``tests/test_reproduce.py``, and wait in the local model cache, where the series reads them as a ``RETRAIN`` series
reads the models its earlier notebooks trained; run alone, the notebooks train them (the whole series: several
minutes, see the README).  The student's path (shipped models) runs in ``tests/test_student_notebooks.py`` and in
nbgrader's autograding (``tests/test_release.py``).  ``COURSE_RETRAIN=0 pytest --nbval notebooks`` checks the outputs on
the student's path instead: a value already in the environment is kept.
"""

import os

import pytest

from helpers._store import RETRAIN_ENV

_CHOSEN = os.environ.get(RETRAIN_ENV)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before nbval starts a notebook's kernel (at its first cell), which inherits this environment."""
    os.environ[RETRAIN_ENV] = "1" if _CHOSEN is None else _CHOSEN


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Tests outside ``notebooks/`` see the environment as it was."""
    if _CHOSEN is None:
        os.environ.pop(RETRAIN_ENV, None)
