"""Tested building blocks for the adversarial-examples course.

The modules read like the course's vocabulary, each one idea, roughly in this order (CONTRIBUTING.md draws who
imports whom): ``data -> models -> attacks -> autoattack -> certify -> training -> recipes -> evaluate -> report
-> plots`` (``autoattack``: APGD, DLR and Square, also reachable from ``attacks``; ``recipes``: which model is
trained how, and the model cache; ``report``: intervals and tables).
``helpers.course`` (the instructor's tooling, a subpackage) and ``helpers.selfcheck`` (the exercises' self-checks) stand apart.
Conventions everywhere: images are float32 NHWC in [0, 1], labels int64, models return logits,
``eps`` is measured in pixel-value units of [0, 1].
"""

__version__ = "0.1.0"


class NotWrittenYet(NotImplementedError):
    """Raised by an exercise stub of a student notebook (``helpers.course`` writes ``raise NotWrittenYet(...)``
    where the solution was), so that ``helpers.selfcheck`` can tell "not written yet" from a real error — also when
    it surfaces from inside Keras (a stub ``train_step`` raises while ``fit`` traces it).  Defined here, without
    TensorFlow, so that the stubs' import is instant."""
