"""Root pytest configuration: applies to tests/ and to the notebooks checked by ``pytest --nbval``."""

import os

# Before TensorFlow is imported anywhere (kernels started by nbval inherit the environment too).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Generated or copied notebooks are not lessons; nbval must not collect them.
collect_ignore_glob = ["build/*", ".venv/*", "venv/*", ".cache/*"]


def pytest_collectstart(collector):
    # nbval: TensorFlow's C++ log lines land on stderr and vary from run to run; compare stdout and results.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)


def pytest_collection_modifyitems(session, config, items):
    # The unsolved student versions execute the series once more (tests/test_student_notebooks.py): run them after
    # the notebooks, whose execution by nbval has filled the model cache, so that they only load models.
    last = [item for item in items if "test_student_version_runs_unsolved" in item.nodeid]
    items[:] = [item for item in items if item not in last] + last
