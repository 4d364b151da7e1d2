"""How long each notebook takes, cold and warm, in seconds and fit units (FU), and where the time goes.

    python benchmarks/bench_notebooks.py [--only 07] [--passes cold warm] [--out benchmarks/results/notebook_times.md]

* **cold**: the series in order in fresh kernels with an *empty* local cache and the shipped models (a temporary ``$COURSE_CACHE_DIR``),
  as a new student's first run (and the main job on a fresh clone): each notebook trains and evaluates what it
  needs and finds what earlier notebooks cached.
* **warm**: the same series again with that cache filled: a student's second run.

Each notebook runs on a copy (the sources are never written) through ``helpers.course.build.execute``, the build's own
runner; its time is wall clock, kernel start included.  1 FU (``helpers.course.fitunit``) is measured in a fresh process
before and after the passes; the smaller of the two is used (both are printed).  Limits checked (issue 28): cold
≤ 25 FU per notebook and ≤ 120 FU in all, warm ≤ 12 FU per notebook.  Run it on a quiet machine: other jobs inflate
seconds and FU differently.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers.course import build  # noqa: E402  (never imports TensorFlow)

LIMITS = {"cold": 25, "warm": 12}
SERIES_LIMIT = 120


def cell_seconds(nb) -> list:
    """``(seconds, index, first line)`` of every executed code cell, from nbclient's timing metadata."""
    rows = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            a = datetime.datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
            b = datetime.datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            rows.append(((b - a).total_seconds(), i, first[:60]))
    return rows


def text_outputs(nb) -> list:
    """Per code cell, its printed text (streams joined, as nbval joins them) and text results, or None for cells
    nbval does not compare."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "NBVAL_IGNORE_OUTPUT" in cell.source:
            out.append(None)
            continue
        out.append("".join(o.get("text", "") if o.get("output_type") == "stream"
                           else o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", [])))
    return out


def run_pass(paths, cache: Path, log, write_back: bool = False) -> dict:
    os.environ["COURSE_CACHE_DIR"] = str(cache)  # helpers._store.CACHE_ENV (course never imports TensorFlow)
    out = {}
    for path in paths:
        nb = copy.deepcopy(nbformat.read(path, as_version=4))
        start = time.perf_counter()
        build.execute(nb, name=path.name, cwd=path.parent, timeout=1800)
        seconds = time.perf_counter() - start
        out[path.stem] = {"seconds": seconds, "cells": cell_seconds(nb), "text": text_outputs(nb)}
        if write_back:
            nbformat.write(nb, path)
        log(f"  {path.stem}: {seconds:.1f} s")
    return out


def differing_cells(results) -> dict:
    """Per notebook, the code cells whose text outputs differ between the cold and the warm pass."""
    return {name: [i for i, (a, b) in enumerate(zip(r["text"], results["warm"][name]["text"])) if a != b]
            for name, r in results["cold"].items()}


def commit() -> str:
    """``commit abc1234`` of the working tree (``+ uncommitted changes`` when it differs from it)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return f"commit {head or 'unknown'}" + (" + uncommitted changes" if dirty else "")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, load average {load:.2f} at start"


def report(results: dict, fu: float, fus, passes, header: str) -> str:
    lines = [f"# Notebook run times, cold and warm\n", header, "",
             f"1 FU = **{fu:.2f} s** here (measured before and after the passes: "
             + ", ".join(f"{v:.2f} s" for v in fus) + "; the smaller is used).", ""]
    names = list(results[passes[0]])
    head = "| notebook | " + " | ".join(f"{p} s | {p} FU" for p in passes) + " |"
    lines += [head, "|" + " --- |" * (1 + 2 * len(passes))]
    for name in names:
        cells = []
        for p in passes:
            s = results[p][name]["seconds"]
            flag = "" if s / fu <= LIMITS[p] else " ✗"
            cells += [f"{s:.0f}", f"{s / fu:.1f}{flag}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = []
    for p in passes:
        s = sum(r["seconds"] for r in results[p].values())
        totals += [f"{s:.0f}", f"{s / fu:.0f}"]
    lines.append("| **series** | " + " | ".join(totals) + " |")
    lines += ["", "Limits (issue 28): cold (a fresh clone: shipped models, empty local cache) ≤ 25 FU per notebook and ≤ 120 FU for the series; warm ≤ 12 FU per "
              "notebook. ✗ marks a notebook over its limit.", ""]
    for p in passes:
        worst = [n for n, r in results[p].items() if r["seconds"] / fu > LIMITS[p]]
        lines.append(f"- {p}: " + ("every notebook within its limit" if not worst else
                                   "over the limit: " + ", ".join(worst)))
    if "cold" in passes:
        s = sum(r["seconds"] for r in results["cold"].values()) / fu
        lines.append(f"- cold series: {s:.0f} FU ({'within' if s <= SERIES_LIMIT else 'over'} {SERIES_LIMIT} FU)")
    lines += ["", "## The five slowest cells of each notebook", ""]
    for name in names:
        lines.append(f"**{name}**\n")
        for p in passes:
            top = sorted(results[p][name]["cells"], reverse=True)[:5]
            lines.append(f"- {p}: " + "; ".join(f"cell {i} `{src}` {s:.1f} s ({s / fu:.1f} FU)"
                                                  for s, i, src in top))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="notebooks whose file name contains this text")
    parser.add_argument("--passes", nargs="+", choices=("cold", "warm"), default=["cold", "warm"])
    parser.add_argument("--notebooks", default=str(ROOT / "notebooks"))
    parser.add_argument("--out", help="write the markdown report here (and a .json beside it)")
    parser.add_argument("--write-back", action="store_true",
                        help="save the cold pass's executed notebooks over the sources (outputs for nbval)")
    parser.add_argument("--retrain", action="store_true",
                        help="the series with RETRAIN (COURSE_RETRAIN=1): every model trained here, none shipped")
    args = parser.parse_args(argv)
    if args.retrain and args.write_back:
        parser.error("--write-back saves the student's path (shipped models): not with --retrain")
    paths = build.find_notebooks(Path(args.notebooks), args.only)
    os.environ.pop("MPLBACKEND", None)
    if args.retrain:
        os.environ["COURSE_RETRAIN"] = "1"   # helpers._store.RETRAIN_ENV: the kernels inherit it
    header = (f"Measured {datetime.date.today()} on {machine()}; {commit()}"
              + ("; **with RETRAIN** (`COURSE_RETRAIN=1`: every model trained here, none read from data/shipped; "
                 "the cold limits below are the student's path's)." if args.retrain else "."))
    print(header, flush=True)
    fus = [build.measure_fit_unit()]
    print(f"1 FU = {fus[0]:.2f} s", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        for p in ("cold", "warm"):  # a warm pass needs the cold pass before it (reported only if asked for)
            if p in args.passes or p == "cold":
                print(f"{p} pass (model cache {cache}):", flush=True)
                results[p] = run_pass(paths, Path(cache), lambda line: print(line, flush=True),
                                      write_back=args.write_back and p == "cold")
    fus.append(build.measure_fit_unit())
    passes = [p for p in ("cold", "warm") if p in args.passes]
    text = report(results, min(fus), fus, passes, header)
    if "warm" in results:
        diff = {k: v for k, v in differing_cells(results).items() if v}
        text += ("\n\nSame text outputs in the cold and the warm pass (remembered models and evaluations give the "
                 "same figures): " + ("yes, in every notebook." if not diff else f"NO — cells differ: {diff}"))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"fu_seconds": fus, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
