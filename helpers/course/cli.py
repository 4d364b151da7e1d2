"""The instructor's build: execute the series, export HTML that works from disk, make student versions.

``python -m helpers.course``: ``build [--out build] [--dataset NAME] [--only PATTERN] [--timeout SECONDS]
[--no-fit-unit] [--retrain]`` executes the series and writes HTML and student versions (``helpers.course.build``);
``release --out DIR [--only PATTERN] [--timeout SECONDS]`` writes an nbgrader course directory
(``helpers.course.release``); ``ship [--from-cache DIR] [--evaluations]`` regenerates the shipped models and
evaluations (``helpers.course.ship``); ``reproduce [--only TEXT]`` retrains the shipped models from their stored
recipes and compares each with the shipped one (``helpers.course.reproduce``).
"""

from __future__ import annotations

import argparse
import os
import sys

from .._store import RETRAIN_ENV
from ..data import DATASETS
from .build import DEFAULT_NOTEBOOKS, BuildError, build, find_notebooks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the notebooks, export HTML and student versions")
    b.add_argument("--out", default="build", help="output folder (default: build)")
    b.add_argument("--dataset", choices=DATASETS, help="run every notebook on this dataset instead of its default")
    _notebook_args(b, "build", "seconds allowed per cell (default: 600)")
    b.add_argument("--no-fit-unit", action="store_true",
                   help="skip measuring the fit unit (run times in seconds only; saves about 4 FU)")
    b.add_argument("--retrain", action="store_true",
                   help="train every model here instead of loading the course's shipped ones (COURSE_RETRAIN=1)")
    s_ = sub.add_parser("ship", help="regenerate the shipped models (data/shipped): the series, retrained from scratch")
    s_.add_argument("--from-cache", help="ship the models an earlier COURSE_RETRAIN=1 run left in this cache folder")
    s_.add_argument("--evaluations", action="store_true",
                    help="keep the shipped models; re-make only their shipped evaluations (the series runs on them)")
    _notebook_args(s_, "ship", "seconds allowed per cell (default: 600)")
    p = sub.add_parser("reproduce", help="retrain the shipped models from their stored recipes; paired test against "
                                          "the shipped ones on the validation split")
    p.add_argument("--only", help="only shipped models whose file name contains this text (e.g. ibp)")
    r = sub.add_parser("release", help="write an nbgrader course directory (needs pip install -e .[instructor])")
    r.add_argument("--out", required=True, help="the course directory to write (source/ and nbgrader_config.py)")
    _notebook_args(r, "release", "seconds allowed per cell when autograding")
    args = parser.parse_args(argv)
    if args.command == "release":
        return _release(args)
    if args.command == "ship":
        return _ship(args)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.retrain:
        os.environ[RETRAIN_ENV] = "1"   # the notebooks' kernels inherit it (helpers.modelcache reads it)
    try:
        build(args.notebooks, args.out, dataset=args.dataset, timeout=args.timeout, only=args.only,
              fit_unit=not args.no_fit_unit)
    except BuildError as err:
        print(f"\nBuild failed: {err}\nNothing was written to {args.out}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nBuild interrupted. Nothing was written to {args.out}.", file=sys.stderr)
        return 130
    return 0


def _notebook_args(command, verb: str, timeout_help: str) -> None:
    """The options ``build`` and ``release`` share: which notebooks, and the time allowed per cell."""
    command.add_argument("--notebooks", default=str(DEFAULT_NOTEBOOKS), help="folder of NN_name.ipynb notebooks")
    command.add_argument("--only", help=f"{verb} only notebooks whose file name contains this text (e.g. 02)")
    command.add_argument("--timeout", type=int, default=600, help=timeout_help)


def _release(args) -> int:
    from .release import ReleaseError, release

    try:
        release(args.out, find_notebooks(args.notebooks, args.only), timeout=args.timeout)
    except (ReleaseError, BuildError) as err:
        print(f"Release failed: {err}", file=sys.stderr)
        return 1
    return 0


def _ship(args) -> int:
    from .ship import ShipError, ship

    if args.only:
        print("ship runs the whole series (later notebooks train models earlier ones use): --only is not allowed",
              file=sys.stderr)
        return 2
    try:
        ship(from_cache=args.from_cache, evaluations_only=args.evaluations, notebooks_dir=args.notebooks,
             timeout=args.timeout)
    except (ShipError, BuildError) as err:
        print(f"Ship failed: {err}\nNothing was replaced.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nShip interrupted. Nothing was replaced.", file=sys.stderr)
        return 130
    return 0


def _reproduce(args) -> int:
    import tempfile

    from .reproduce import ReproduceError, reproduce

    try:
        with tempfile.TemporaryDirectory(prefix="course-reproduce-") as scratch:
            results = reproduce(args.only, directory=scratch)
    except ReproduceError as err:
        print(f"Reproduce failed: {err}", file=sys.stderr)
        return 1
    differ = [stem for stem, r in results if r.differs]
    print(f"{len(results) - len(differ)} of {len(results)} shipped models reproduced without a real difference"
          + (f"; a real difference: {', '.join(differ)}" if differ else ""))
    return 1 if differ else 0
