"""Plant plausible one-line bugs in ``helpers/``, one at a time, and see whether the quick loop catches each.

The quick loop is ``python -m pytest -m "not slow" tests -x -q -p no:cacheprovider`` run in the repository this
script lives in (with ``PYTHONPATH`` set to it).  Each mutant is ``(name, file, old text, new text, description)``:
the old text must occur exactly once in the file (``--check`` lists the mutants whose anchor does not; after a
refactor, fix those anchors here).  For speed, each mutant first runs the quick-loop tests of the files that test
its module (``FIRST_TRY``) with ``-x``; only if none fails does it run the whole quick loop.  Either way the tests
run are quick-loop tests, so a failure means the quick loop catches the mutant.

The file is always restored (``try``/``finally``); the script refuses to start when ``helpers/`` has uncommitted
changes and checks ``git diff --quiet helpers/`` at the end.

    python benchmarks/plant_bugs.py --check             # every anchor found exactly once?
    python benchmarks/plant_bugs.py --only apgd         # the mutants whose name contains "apgd"
    python benchmarks/plant_bugs.py --write             # all of them; writes benchmarks/results/plant_bugs.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "plant_bugs.md"
QUICK = ["-m", "not slow", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rfE"]
TIMEOUT_S = 900


class Mutant(NamedTuple):
    name: str
    file: str   # relative to the repository
    old: str    # exact text, found exactly once in ``file``
    new: str
    what: str

    @property
    def module(self) -> str:
        return Path(self.file).stem


#: Test files tried first for a mutant of each module (all of them quick-loop tests; missing files are skipped).
FIRST_TRY = {
    "attacks": ["test_oracles.py", "test_attacks.py", "test_autoattack.py"],
    "autoattack": ["test_oracles.py", "test_autoattack.py"],
    "_compiled": ["test_oracles.py", "test_autoattack.py", "test_attacks.py"],
    "certify": ["test_certify.py", "test_oracles.py"],
    "training": ["test_training_rules.py", "test_training.py", "test_oracles.py"],
    "report": ["test_oracles.py", "test_report.py"],
    "selfcheck": ["test_oracles.py", "test_selfcheck.py"],
    "evaluate": ["test_oracles.py", "test_evaluate.py"],
    "data": ["test_oracles.py", "test_data.py"],
}

#: Mutants that only the training-rule tests (tests/test_training_rules.py, merged from another branch) catch: the
#: table reports the catch rate with and without them.
EXPECTED_AFTER_MERGE = {"eps-warmup-off-by-one", "stall-one-sided", "collapse-ignores-own", "collapse-hold-max"}

A, AA, C, T = "helpers/attacks.py", "helpers/autoattack.py", "helpers/certify.py", "helpers/training.py"
R, S, E, D = "helpers/report.py", "helpers/selfcheck.py", "helpers/evaluate.py", "helpers/data.py"
M = Mutant
MUTANTS = [
    # ---------------------------------------------------------------------------------------------- attacks
    M("pgd-no-projection", A, "        return tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0), done",
      "        return tf.clip_by_value(x_adv, 0.0, 1.0), done",
      "PGD without its projection into the ε-ball"),
    M("pgd-no-clip", A, "        return tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0), done",
      "        return x + project(x_adv - x, eps, norm), done", "PGD not clipped to [0, 1]"),
    M("succeeded-ignores-targeted", A, "    return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)",
      "    return tf.not_equal(pred, y)", "`succeeded` ignores `targeted`"),
    M("fgsm-sign-flip", A, "    return tf.clip_by_value(x + step_rule(grad, eps, scale), 0.0, 1.0)",
      "    return tf.clip_by_value(x - step_rule(grad, eps, scale), 0.0, 1.0)", "FGSM steps down the loss"),
    M("targeted-direction", A, "        objective = tf.reduce_sum(-losses if targeted else losses)",
      "        objective = tf.reduce_sum(losses)", "targeted attacks climb the target's loss"),
    M("l2-project-per-batch", A,
      "    length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=_reduce_axes(delta), keepdims=True))",
      "    length = tf.sqrt(tf.reduce_sum(tf.square(delta)))", "L2 projection uses the batch's norm"),
    M("l2-step-per-batch", A, "        size = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes, keepdims=True))",
      "        size = tf.sqrt(tf.reduce_sum(tf.square(grad)))", "L2 step rule uses the batch's norm"),
    M("restarts-keep-worse", A, "        better = score > best_score[todo]",
      "        better = score < best_score[todo]",
      "PGD restarts keep the worse result"),
    # ---------------------------------------------------------------------------------- autoattack, engine
    M("apgd-halving-inverted", AA,
      "    halve = check & ((n_up <= window * _APGD_RHO) | (~s.halved & (s.best_at_check >= obj_best)))",
      "    halve = check & ((n_up > window * _APGD_RHO) | (~s.halved & (s.best_at_check >= obj_best)))",
      "APGD's step-halving condition inverted"),
    M("square-keeps-worse", AA, "        better = active & (value < best)", "        better = active & (value > best)",
      "Square keeps worse proposals"),
    M("dlr-denominator", AA, "    return -margin(logits, y) / (top[:, 0] - top[:, 2] + _TINY)",
      "    return -margin(logits, y) / (top[:, 0] - top[:, 1] + _TINY)", "DLR divides by z_π1 - z_π2"),
    M("margin-includes-label", AA, "    return z_y - tf.reduce_max(tf.where(onehot, -np.inf, logits), axis=-1)",
      "    return z_y - tf.reduce_max(logits, axis=-1)", "margin's max includes the true class"),
    M("apgd-keeps-best-not-found", AA, "        best[todo[found]] = state.x_found[found]",
      "        best[todo[found]] = state.x_best[found]", "APGD returns its best-objective point, not the fooling one"),
    M("chunks-share-seed", "helpers/_compiled.py",
      "        yield indices[i:i + batch], (None if seed is None else chunk_seed(seed, c))",
      "        yield indices[i:i + batch], (None if seed is None else chunk_seed(seed, 0))",
      "every chunk shares one seed"),
    # ---------------------------------------------------------------------------------------------- certify
    M("certify-no-last-allowance", C, "        margin = margin - (tf.gather(e, y, batch_dims=1)[:, None] + e)\n", "",
      "certificate without the last layer's rounding allowance"),
    M("certify-no-hidden-widening", C, "        r = r + c * tf.maximum(-lower, upper)  # lower",
      "        r = r  # lower", "certificate without the hidden layers' widening"),
    M("certify-radius-signed-w", C, "        mu, r = keras.ops.matmul(mu, w), keras.ops.matmul(r, tf.abs(w))",
      "        mu, r = keras.ops.matmul(mu, w), keras.ops.matmul(r, w)", "IBP radius through W, not |W|"),
    M("certify-box-unclipped", C,
      "    return tf.clip_by_value(x - eps, 0.0, 1.0), tf.clip_by_value(x + eps, 0.0, 1.0)",
      "    return x - eps, x + eps", "IBP's input box not clipped to [0, 1]"),
    M("certify-elided-signed-diff", C,
      '    margin = tf.einsum("nd,ndk->nk", mu, diff) - tf.einsum("nd,ndk->nk", r, tf.abs(diff))',
      '    margin = tf.einsum("nd,ndk->nk", mu, diff) - tf.einsum("nd,ndk->nk", r, diff)',
      "elided margin's radius through w_y - w_j, not its absolute value"),
    # --------------------------------------------------------------------------------------------- training
    M("eps-warmup-off-by-one", T, "min(1.0, (epoch + 1) / self.epochs)", "min(1.0, epoch / self.epochs)",
      "ε warm-up off by one (starts at 0)"),
    M("stall-one-sided", T, "return all(abs(v - self._chance()) <= self.tolerance for v in values)",
      "return all(v - self._chance() <= self.tolerance for v in values)", "StallMonitor's chance test one-sided"),
    M("collapse-ignores-own", T, "if pgd[end] - pgd[later] >= drop and own[later] >= own_high:",
      "if pgd[end] - pgd[later] >= drop:", "find_collapse ignores the training attack"),
    M("collapse-hold-max", T, "if min(pgd[end - hold + 1:end + 1]) < level:",
      "if max(pgd[end - hold + 1:end + 1]) < level:", "find_collapse: one epoch above the level counts as holding"),
    # ----------------------------------------------------------------------------------------------- report
    M("wilson-z-90", R, "Z95 = 1.959963984540054", "Z95 = 1.6448536269514722",
      "Wilson interval with the 90 % z"),
    M("wilson-centre-z", R, "    centre = (p + z * z / (2 * n)) / (1 + z * z / n)",
      "    centre = (p + z / (2 * n)) / (1 + z * z / n)", "Wilson centre with z instead of z²"),
    M("mcnemar-counts-neither", R,
      "int(np.sum(a_ok & ~b_ok)), int(np.sum(~a_ok & b_ok))", "int(np.sum(a_ok & ~b_ok)), int(np.sum(~a_ok & ~b_ok))",
      "paired difference counts 'both wrong' as discordant"),
    M("mcnemar-one-sided", R, "    return min(1.0, 2 * tail / 2 ** m)", "    return min(1.0, tail / 2 ** m)",
      "McNemar p-value one-sided"),
    M("newcombe-swapped", R,
      "    return d, d - math.sqrt((a - la) ** 2 + (hb - b) ** 2), d + math.sqrt((ha - a) ** 2 + (b - lb) ** 2)",
      "    return d, d - math.sqrt((ha - a) ** 2 + (b - lb) ** 2), d + math.sqrt((a - la) ** 2 + (hb - b) ** 2)",
      "Newcombe's interval with its two sides swapped"),
    # ------------------------------------------------------------------------------------------------ selfcheck
    M("selfcheck-search-vs-start", S, "        if np.any(history[-1] > history[-2] + 1e-5):",
      "        if np.any(history[-1] > history[0] + 1e-5):", "random-search check compares with the start only"),
    M("selfcheck-gain-max-norm", S, "        best = eps * np.abs(flat).sum(axis=1)",
      "        best = eps * np.abs(flat).max(axis=1)", "best linear gain graded with ‖g‖∞ instead of ‖g‖₁"),
    M("selfcheck-least-all", S, "    expected = np.sort(conf[right])[:k]", "    expected = np.sort(conf)[:k]",
      "least-confident check ranks mistakes too"),
    M("selfcheck-interval-signed", S, "    return mu @ W + b - r @ np.abs(W), mu @ W + b + r @ np.abs(W)",
      "    return mu @ W + b - r @ W, mu @ W + b + r @ W", "interval reference with W, not |W|"),
    M("selfcheck-hint-flip", S, "                  (wrong_way, np.clip(x - eps * s, 0, 1)),",
      "                  (wrong_way, np.clip(x + eps * s, 0, 1)),", "FGSM hint: 'sign flipped' on the right answer"),
    # ------------------------------------------------------------------------------------------------- evaluate
    M("targeted-rate-counts-hits", E, "    keep = targets != y", "    keep = targets >= 0",
      "targeted success counts images already of the target"),
    M("norms-l2-per-batch", E, '"l2": np.sqrt((d**2).sum(axis=1))}', '"l2": np.sqrt((d**2).sum()) + 0 * d[:, 0]}',
      "perturbation L2 norm per batch"),
    M("confusion-transposed", E, "np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)",
      "np.add.at(cm, (np.asarray(y_pred, np.int64), np.asarray(y_true, np.int64)), 1)",
      "confusion matrix transposed"),
    M("strong-worst-any", E, "        robust &= result[name]", "        robust |= result[name]",
      "strong evaluation's worst case: robust if any attack fails"),
    M("success-matrix-transposed", E, "                    m[s, t] = hit[y[keep] == s].mean()",
      "                    m[t, s] = hit[y[keep] == s].mean()", "success matrix transposed"),
    # ----------------------------------------------------------------------------------------------------- data
    M("validation-leak", D, "    keep[val] = False", "    keep[val] = True", "validation images stay in training"),
    M("remainder-smallest-first", D, '        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1',
      '        quota[np.argsort(exact - quota, kind="stable")[:short]] += 1',
      "stratified draw: smallest remainders get the extra examples"),
    M("subset-val-test-swapped", D,
      "        return Dataset(x_tr, y_tr, x_va, y_va, x_te, y_te, self.class_names, self.name)",
      "        return Dataset(x_tr, y_tr, x_te, y_te, x_va, y_va, self.class_names, self.name)",
      "subset swaps validation and test"),
    M("pixels-over-256", D,
      "        x = stored[f\"x_{split}\"].astype(np.float32)[..., np.newaxis]\n        x /= 255.0",
      "        x = stored[f\"x_{split}\"].astype(np.float32)[..., np.newaxis]\n        x /= 256.0",
      "bundled pixels divided by 256"),
]


def check_anchors(mutants) -> list[str]:
    """Problems with the anchors: files missing, old text found other than once, duplicate names."""
    problems, seen = [], set()
    for m in mutants:
        if m.name in seen:
            problems.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        path = ROOT / m.file
        if not path.exists():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: its old text occurs {count} times in {m.file}")
    return problems


def helpers_clean() -> bool:
    return subprocess.run(["git", "diff", "--quiet", "--", "helpers/"], cwd=ROOT).returncode == 0


def pytest(paths, timeout=TIMEOUT_S) -> tuple[bool, str, float]:
    """``(passed, first failing test or '', seconds)`` of the quick-loop tests in ``paths``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", *QUICK, *paths], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"(timeout after {timeout} s)", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if out.returncode == 0:
        return True, "", seconds
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", out.stdout, re.M)
    return False, found.group(1) if found else f"(pytest exit {out.returncode})", seconds


def run_mutant(m: Mutant) -> tuple[str, float]:
    """Plant ``m``, run its first-try tests then (if they pass) the whole quick loop; always restore the file."""
    path = ROOT / m.file
    original = path.read_text()
    start = time.perf_counter()
    try:
        path.write_text(original.replace(m.old, m.new, 1))
        first = [f"tests/{f}" for f in FIRST_TRY.get(m.module, []) if (ROOT / "tests" / f).exists()]
        passed, caught = (pytest(first)[:2] if first else (True, ""))
        if passed:
            passed, caught, _ = pytest(["tests"])
    finally:
        path.write_text(original)
    return ("" if passed else caught), time.perf_counter() - start


def header() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return (f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; commit {commit}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def write_table(rows, baseline, clean_passed) -> str:
    counted = [(m, caught, s) for m, caught, s in rows if m.name not in EXPECTED_AFTER_MERGE]
    n_caught = sum(bool(c) for _, c, _ in counted)
    all_caught = sum(bool(c) for _, c, _ in rows)
    lines = ["# Planted bugs: what the quick loop catches", "",
             "Made by `python benchmarks/plant_bugs.py --write`: each mutant is planted alone, then the quick loop "
             "(`pytest -m \"not slow\" tests -x`) runs (the mutated module's test files first); *caught by* is the "
             "first failing test.", "", header(), "",
             f"Quick loop on the unmutated code: {baseline:.1f} s ({'passed' if clean_passed else 'FAILED'}).", "",
             f"Caught: {all_caught} of {len(rows)} mutants ({all_caught / max(len(rows), 1):.0%}); without the "
             f"{len(rows) - len(counted)} training mutants that only tests/test_training_rules.py catches: "
             f"{n_caught} of {len(counted)} ({n_caught / max(len(counted), 1):.0%}).", "",
             "| mutant | module | what | caught by (first failing test) | seconds |", "|---|---|---|---|---:|"]
    for m, caught, seconds in rows:
        verdict = f"`{caught}`" if caught else ("**missed** (test_training_rules.py expected)"
                                                 if m.name in EXPECTED_AFTER_MERGE else "**missed**")
        lines.append(f"| {m.name} | {m.module} | {m.what} | {verdict} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the mutants whose name or module contains this (a regex)")
    parser.add_argument("--check", action="store_true", help="only check that every anchor occurs exactly once")
    parser.add_argument("--write", action="store_true", help=f"write the table to {RESULT.relative_to(ROOT)}")
    parser.add_argument("--no-baseline", action="store_true", help="skip timing the unmutated quick loop")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or re.search(args.only, f"{m.name} {m.module}")]
    problems = check_anchors(mutants)
    if args.check or problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(mutants) - len({p.split(':')[0] for p in problems})} of {len(mutants)} anchors found once")
        return 1 if problems else 0
    if not helpers_clean():
        print("helpers/ has uncommitted changes: commit or stash them first (mutants are planted there)",
              file=sys.stderr)
        return 1
    baseline, clean_passed = 0.0, True
    if not args.no_baseline:
        clean_passed, failing, baseline = pytest(["tests"])
        print(f"unmutated quick loop: {baseline:.1f} s, {'passed' if clean_passed else 'FAILED at ' + failing}")
    rows = []
    try:
        for m in mutants:
            caught, seconds = run_mutant(m)
            rows.append((m, caught, seconds))
            print(f"{m.name:32} {'caught by ' + caught if caught else 'MISSED':90.90} {seconds:5.0f} s", flush=True)
    finally:
        if not helpers_clean():
            print("helpers/ differs from the commit after the run: restore it (git diff helpers/)", file=sys.stderr)
            return 2
    print(f"caught {sum(bool(c) for _, c, _ in rows)} of {len(rows)}")
    if args.write:
        RESULT.write_text(write_table(rows, baseline, clean_passed))
        print(f"wrote {RESULT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
