"""The instructor's build: execute the series, export HTML that works from disk, make student versions.

``python -m helpers.course``: ``build [--out build] [--dataset NAME] [--only PATTERN] [--timeout SECONDS]
[--no-fit-unit]`` executes the series and writes HTML and student versions (``helpers.course.build``); ``release --out DIR [--only PATTERN] [--timeout
SECONDS]`` writes an nbgrader course directory (``helpers.course.release``).
"""

from __future__ import annotations

import argparse
import sys

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
    r = sub.add_parser("release", help="write an nbgrader course directory (needs pip install -e .[instructor])")
    r.add_argument("--out", required=True, help="the course directory to write (source/ and nbgrader_config.py)")
    _notebook_args(r, "release", "seconds allowed per cell when autograding")
    args = parser.parse_args(argv)
    if args.command == "release":
        return _release(args)
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
