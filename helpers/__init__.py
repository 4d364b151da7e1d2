"""Tested building blocks for the adversarial-examples course.

The modules read like the course's vocabulary, each one idea, in layers from the bottom up (CONTRIBUTING.md draws
who imports whom, and ``tests/test_structure.py`` checks it): ``data``, ``models``, ``attacks``, ``autoattack`` (APGD,
DLR, Square), ``certify``, ``registry`` (the one attack registry), ``training``, ``recipes`` (which model is trained
how, and the model cache), ``evalcache``, ``evaluate``, ``report`` (intervals and tables), ``plots``, ``selfcheck``
(the exercises' self-checks).  ``helpers.course`` (the instructor's tooling, a subpackage) stands apart: it may
import the vocabulary, never the other way round.
Conventions everywhere: images are float32 NHWC in [0, 1], labels int64, models return logits,
``eps`` is measured in pixel-value units of [0, 1].
"""

__version__ = "0.1.0"


class NotWrittenYet(NotImplementedError):
    """Raised by an exercise stub of a student notebook (``helpers.course`` writes ``raise NotWrittenYet(...)``
    where the solution was), so that ``helpers.selfcheck`` can tell "not written yet" from a real error — also when
    it surfaces from inside Keras (a stub ``train_step`` raises while ``fit`` traces it).  Defined here, without
    TensorFlow, so that the stubs' import is instant."""
