"""How one run of an exercise's self-check behaves, for every check of ``helpers.selfcheck``: the stub, the outcome.

- ``self_check(number, what)`` wraps a check: an answer that is ``None`` or the student version's stub
  (``NotWrittenYet``, see ``is_stub``) prints "Exercise N is not written yet: …" instead of failing; every run
  records its outcome in ``OUTCOMES`` ("passed", the message the student read, or the error the answer raised) and
  the call of each passing run in ``CALLS``.
- ``as_array`` turns what an answer returned into an array of the expected shape, or says what it returned instead.
``helpers.selfcheck`` defines the checks and reads these records: ``selfcheck.graded(check)``, the hidden test
nbgrader runs at the end of an autograded check cell, fails with the message the student read.
"""

from __future__ import annotations

import functools

import numpy as np

from . import NotWrittenYet

NOT_WRITTEN = "Exercise {number} is not written yet: fill in {what} above, then run this cell again."
#: What an answer that raises an error (other than the stub's) leaves in ``OUTCOMES``: nbgrader's feedback names it.
RAISED = ("your {what} raised {error} in the self-check {check}(): see the traceback above, fix it, then run this "
          "cell again")


# ------------------------------------------------------------------------------------------------ the stub
def is_stub(err: BaseException) -> bool:
    """True if ``err`` comes from an exercise stub: ``NotWrittenYet``, or the ``NotImplementedError("exercise")`` of
    student versions built before it existed.  Any other ``NotImplementedError`` is a real error."""
    return isinstance(err, NotWrittenYet) or (type(err) is NotImplementedError and str(err).strip() == "exercise")


#: What the last run of each check in this kernel found: "passed", or the message the student read (not written
#: yet, what is wrong, or the error the answer raised).  ``selfcheck.graded`` reads it: nbgrader's hidden tests say
#: the same thing the check said.
OUTCOMES: dict = {}
PASSED = "passed"
#: The answer and arguments of each check's last passing run (for ``selfcheck.graded``'s second question).
CALLS: dict = {}


def _not_written(number: int, what: str, check: str | None = None):
    message = NOT_WRITTEN.format(number=number, what=what)
    print(message)
    if check is not None:
        OUTCOMES[check] = message
    return None


def _error_text(err: BaseException) -> str:
    """``TypeError: the message`` (its first line, at most 300 characters)."""
    lines = str(err).strip().splitlines()
    first = lines[0][:300] if lines else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def self_check(number: int, what: str):
    """Make a check answer "not written yet" (and return None) when the answer is None or its code is the stub, and
    record every run's outcome (``OUTCOMES``) and each passing call (``CALLS``)."""
    def decorate(check):
        @functools.wraps(check)
        def run(answer, *args, **kwargs):
            name = check.__name__
            OUTCOMES.pop(name, None)
            CALLS.pop(name, None)
            if answer is None:
                return _not_written(number, what, name)
            try:
                result = check(answer, *args, **kwargs)
            except AssertionError as err:
                OUTCOMES[name] = str(err)
                raise
            except Exception as err:
                if is_stub(err):
                    return _not_written(number, what, name)
                OUTCOMES[name] = RAISED.format(what=what, error=_error_text(err), check=name)
                raise
            OUTCOMES[name], CALLS[name] = PASSED, (answer, args, kwargs)
            return result
        run.exercise, run.fills_in = number, what
        return run
    return decorate


def as_array(value, shape, call: str, dtype=np.float64) -> np.ndarray:
    """``value`` as an array of ``shape``, or an AssertionError that says what ``call`` returned instead."""
    if value is None:
        raise AssertionError(f"{call} returned None: did you forget the `return`?")
    try:
        arr = np.asarray(value, dtype)
    except (TypeError, ValueError):
        raise AssertionError(f"{call} should return an array of shape {shape}, got {type(value).__name__}") from None
    if arr.shape != tuple(shape):
        raise AssertionError(f"{call} should return an array of shape {tuple(shape)}, got shape {arr.shape}")
    return arr
