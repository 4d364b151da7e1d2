"""Tested building blocks for the adversarial-examples course.

The modules read like the course's vocabulary, each one idea, each importing only the ones before it:
``data -> models -> attacks -> certify -> training -> recipes -> evaluate -> report -> plots``
(``recipes``: which model is trained how, and the model cache; ``report``: intervals and tables).
``helpers.course`` (the instructor's build) stands apart.  Conventions everywhere: images are float32 NHWC in
[0, 1], labels int64, models return logits,
``eps`` is measured in pixel-value units of [0, 1].
"""

__version__ = "0.1.0"
