"""Import TensorFlow without its C++ start-up chatter; the modules that use TensorFlow import this first.

TensorFlow's start-up lines (oneDNN notice, "no CUDA drivers") go straight to file descriptor 2, ignore
TF_CPP_MIN_LOG_LEVEL in current releases, and would clutter every notebook.  We import it once with that descriptor
pointed at /dev/null; Python-level errors still raise (and print) as usual.  ``COURSE_VERBOSE_TF=1`` turns this off.
``helpers.data`` and ``helpers.course`` (but for its ``fitunit``) never import TensorFlow, so they stay fast to
import.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "tensorflow" not in sys.modules and os.environ.get("COURSE_VERBOSE_TF") != "1":
    try:
        _saved = os.dup(2)
    except OSError:  # no stderr descriptor at all: nothing to quieten
        _saved = None
    if _saved is not None:
        _null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(_null, 2)
        try:
            import tensorflow as _tf

            _tf.config.list_physical_devices("GPU")  # the CUDA probe logs on first use: get it over with now
        finally:
            os.dup2(_saved, 2)
            os.close(_saved)
            os.close(_null)

import tensorflow as _tf  # noqa: E402

# The attacks compile one tf.function per (model, configuration) on purpose; TensorFlow's "excessive retracing"
# warning would misread that as a mistake.
_tf.get_logger().setLevel("ERROR")
