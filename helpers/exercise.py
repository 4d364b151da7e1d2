"""How an exercise's self-check behaves, for every check of ``helpers.selfcheck``: the stub, the outcome, the grade.

- ``_exercise(number, what)`` wraps a check: an answer that is ``None`` or the student version's stub
  (``NotWrittenYet``, see ``is_stub``) prints "Exercise N is not written yet: …" instead of failing; every run
  records its outcome in ``OUTCOMES`` ("passed", or the message the student read).
- ``graded(check)`` is the hidden test nbgrader runs at the end of an autograded check cell (``helpers.grading``):
  it fails with the message the student read, and, for the checks of ``SHORTCUTS``, if the answer only passes by
  calling the ``helpers.attacks`` function it is compared with.
- ``skip_if_not_written(N)`` lets the cells after an exercise print one "skipped" line instead of a traceback.
The messages are defined once, here and in ``helpers.selfcheck``, so the live notebook and nbgrader's feedback say
the same thing.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from . import NotWrittenYet
from . import attacks, autoattack

NOT_WRITTEN = "Exercise {number} is not written yet: fill in {what} above, then run this cell again."
SKIPPED = "(skipped: exercise {number} is not written yet)"


# ------------------------------------------------------------------------------------------------ the stub
def is_stub(err: BaseException) -> bool:
    """True if ``err`` comes from an exercise stub: ``NotWrittenYet``, or the ``NotImplementedError("exercise")`` of
    student versions built before it existed.  Any other ``NotImplementedError`` is a real error."""
    return isinstance(err, NotWrittenYet) or (type(err) is NotImplementedError and str(err).strip() == "exercise")


#: What the last run of each check in this kernel found: "passed", or the message the student read (not written
#: yet, or what is wrong).  ``graded`` reads it: nbgrader's hidden tests say the same thing the check said.
OUTCOMES: dict = {}
PASSED = "passed"
NOT_RUN = "the self-check {check}() did not run: run the cells above it, then this one"


def _not_written(number: int, what: str, check: str | None = None):
    message = NOT_WRITTEN.format(number=number, what=what)
    print(message)
    if check is not None:
        OUTCOMES[check] = message
    return None


#: The answer and arguments of each check's last passing run (for ``graded``'s second question).
CALLS: dict = {}
#: Checks that compare the answer with a function of ``helpers.attacks`` or ``helpers.autoattack`` (``module.name``,
#: at its one home), which an answer could simply call and pass:
#: ``{check: (those functions, how the check calls the answer on a few of its inputs)}``.
SHORTCUTS = {
    "fgsm": (("attacks.fgsm", "attacks.gradient_attack", "attacks.pgd"),
             lambda fn, model, x, y, eps, **_: fn(model, x[:4], y[:4], eps)),
    "targeted_fgsm": (("attacks.fgsm", "attacks.gradient_attack", "attacks.pgd"),
                      lambda fn, model, x, t, eps, *_, **__: fn(model, x[:4], t[:4], eps)),
    "dlr": (("autoattack.dlr_loss",), lambda fn, z, y, **_: fn(np.asarray(z)[:4], np.asarray(y)[:4])),
}
_HOMES = {"attacks": attacks, "autoattack": autoattack}
SHORTCUT = ("your answer calls helpers.{name}, the function the self-check compares it with: the exercise "
            "is to write it yourself")


class _Shortcut(Exception):
    pass


def graded(check: str) -> None:
    """The hidden test of an autograded self-check cell (``helpers.grading``): raise ``AssertionError`` unless the
    last run of ``selfcheck.<check>`` in this kernel passed, with the message the student read from it; for the
    checks of ``SHORTCUTS``, also if the answer only works by calling the ``helpers`` function it is compared with."""
    outcome = OUTCOMES.get(check)
    if outcome != PASSED:
        raise AssertionError(outcome if outcome is not None else NOT_RUN.format(check=check))
    if check in SHORTCUTS and check in CALLS:
        _no_shortcut(check)


def _no_shortcut(check: str) -> None:
    """Call the answer again with the functions of ``SHORTCUTS[check]`` replaced by ones that refuse."""
    from unittest import mock

    names, call = SHORTCUTS[check]
    answer, args, kwargs = CALLS[check]

    def refuse(name):
        def stand_in(*a, **k):
            raise _Shortcut(name)
        return stand_in

    with contextlib.ExitStack() as stack:
        for name in names:
            home, _, attribute = name.partition(".")
            stack.enter_context(mock.patch.object(_HOMES[home], attribute, refuse(name)))
        try:
            call(answer, *args, **kwargs)
        except _Shortcut as err:
            raise AssertionError(SHORTCUT.format(name=err.args[0])) from None


@contextlib.contextmanager
def skip_if_not_written(number: int):
    """Run the block; if an exercise stub raises in it, print one "skipped" line instead of failing."""
    try:
        yield
    except NotImplementedError as err:
        if not is_stub(err):
            raise
        print(SKIPPED.format(number=number))


def _exercise(number: int, what: str):
    """Make a check answer "not written yet" (and return None) when the answer is None or its code is the stub."""
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
            except NotImplementedError as err:
                if not is_stub(err):
                    raise
                return _not_written(number, what, name)
            except AssertionError as err:
                OUTCOMES[name] = str(err)
                raise
            OUTCOMES[name], CALLS[name] = PASSED, (answer, args, kwargs)
            return result
        run.exercise, run.fills_in = number, what
        return run
    return decorate


def _array(value, shape, call: str, dtype=np.float64) -> np.ndarray:
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
