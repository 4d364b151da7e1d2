"""The instructor's tooling, apart from the course's vocabulary (``helpers.data`` … ``helpers.selfcheck``).

- ``build``: execute the series, export HTML that works from disk, write student versions
  (``python -m helpers.course build --out DIR``);
- ``student``: the student version of a notebook (solutions become exercise stubs, hidden tests disappear);
- ``grading``: the grading table and the nbgrader metadata it writes (``python -m helpers.course.grading``);
- ``release``: an nbgrader course directory (``python -m helpers.course release --out DIR``);
- ``fitunit``: the fit unit (FU), a machine's speed in the course's currency (``python -m helpers.course.fitunit``);
- ``ship``: regenerate the shipped models and evaluations (``python -m helpers.course ship``);
- ``reproduce``: retrain the shipped models from their stored recipes, compare (``python -m helpers.course reproduce``);
- ``cli``: the ``python -m helpers.course`` command (``build``, ``release``, ``ship``, ``reproduce``).

This package may import the course's vocabulary; nothing there imports it.  Importing it imports nothing: each module
is imported where it is used, and only ``fitunit`` imports TensorFlow.
"""
