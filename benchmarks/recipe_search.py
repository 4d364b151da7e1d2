"""Choose the course's best robust recipe on the validation split, then report the choice once on the test set.

Run: ``python benchmarks/recipe_search.py [--candidates pgd40 trades30 ...] [--cache DIR]``.  Every candidate is
trained from scratch on the 3,500 training images of ``mnist_5k`` (seed 0), timed, and scored on the 500 validation
images with ``evaluate.strong_accuracy`` at ε = 0.3 (APGD-CE, APGD-DLR, Square; worst case per image).  The
candidate with the best validation worst case is reported on the 1,000 test images — the only time the test images
are touched.  Prints a Markdown table.

``--ibp`` does the same for the certified recipe (``recipes.ibp_model``): candidates ``ibp100``,
``ibp150``, ``ibp140_eps040``, ``ibp200_b128``, ``ibp140_kappa0``, ``ibp140_ramp04``, scored by certified accuracy
at ε = 0.3 on the validation images (``helpers.certify``).

``--schedules`` re-chooses, on the validation split only, the learning-rate schedule (and, for ``"pgd"``, the
number of attack steps) of two course recipes, each search with its own winner: the ``"pgd"`` recipe among PGD-4 and
PGD-7 adversarial-only training (default step 2.5·ε/steps), 20 epochs, each with warm-up + cosine to 2e-3 or Adam at a
constant 1e-3 (``pgd4_cosine``, ``pgd7_cosine``, ``pgd4_const``, ``pgd7_const``), and the ``"robust"`` recipe
(TRADES β = 6, KL-PGD 10 steps of ε/6, 30 epochs) with either schedule (``trades30_cosine``, ``trades30_const``).
``pgd4_cosine`` and ``trades30_cosine`` are today's ``recipes.course_model(ds, "pgd")`` and ``(ds, "robust")``: the
script checks that they build the very same cache key (hence the same weights).  Every candidate is scored on the
500 validation images by clean accuracy, PGD-40 × 3 restarts (step 0.01) and the per-image worst case of
``evaluate.strong_accuracy`` (which decides; ties go to the first listed, today's recipe), and compared with the
chosen one image by image on that worst case (discordant counts, exact McNemar p-value, paired 95 % interval).
``--output FILE`` also writes the Markdown, with a header naming the command, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import sys
import tempfile
import time
from unittest import mock

import numpy as np

if __name__ == "__main__":  # run as a script (not when a test loads it: notebook kernels would inherit it)
    os.environ.setdefault("COURSE_EVAL_CACHE", "0")  # benchmarks measure: compute every evaluation (helpers.evalcache)
from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)

from helpers import attacks, certify, data, evaluate, modelcache, models, recipes, report, schedules

import keras  # noqa: E402  (after helpers._quiet)

EPS = 0.3


def candidates(ds):
    """name -> (description, keyword arguments of ``recipes.adversarial_model``)."""
    def schedule(epochs):
        return schedules.warmup_cosine(2e-3, epochs * schedules.steps_per_epoch(len(ds.x_train), 64))

    return {
        "pgd40": ("PGD-7 adversarial training, 40 epochs", dict(
            attack="pgd", mode="adversarial", epochs=40, attack_kwargs={"steps": 7}, learning_rate=schedule(40))),
        "pgd10x30": ("PGD-10 adversarial training, 30 epochs", dict(
            attack="pgd", mode="adversarial", epochs=30, attack_kwargs={"steps": 10}, learning_rate=schedule(30))),
        "trades30": ("TRADES β = 6, KL-PGD 10 steps of 0.05, 30 epochs", dict(
            attack="pgd", mode="trades", beta=6.0, epochs=30, attack_kwargs={"steps": 10, "step_size": 0.05},
            learning_rate=schedule(30))),
        "trades40": ("TRADES β = 6, KL-PGD 10 steps of 0.05, 40 epochs", dict(
            attack="pgd", mode="trades", beta=6.0, epochs=40, attack_kwargs={"steps": 10, "step_size": 0.05},
            learning_rate=schedule(40))),
    }


def ibp_candidates():
    """name -> (description, keyword arguments of ``recipes.ibp_model``); all at ε = 0.3."""
    return {
        "ibp100": ("IBP, trained at ε 0.35, 100 epochs", dict(epochs=100, eps_train=0.35)),
        "ibp150": ("IBP, trained at ε 0.35, 150 epochs", dict(epochs=150, eps_train=0.35)),
        "ibp140_eps040": ("IBP, trained at ε 0.40, 140 epochs", dict(epochs=140, eps_train=0.40)),
        "ibp200_b128": ("IBP, trained at ε 0.35, 200 epochs of batch 128", dict(epochs=200, eps_train=0.35,
                                                                               batch_size=128)),
        "ibp140_kappa0": ("IBP, trained at ε 0.35, 140 epochs, κ → 0", dict(epochs=140, eps_train=0.35,
                                                                           kappa_end=0.0)),
        "ibp140_ramp04": ("IBP, trained at ε 0.35, 140 epochs, ramp over 40 %", dict(epochs=140, eps_train=0.35,
                                                                                    ramp=0.4)),
    }


class _Captured(Exception):
    """Carries the arguments of an intercepted ``recipes`` call out of it, so that nothing is trained."""


def course_arguments(ds, kind):
    """The keyword arguments ``recipes.course_model(ds, kind)`` passes to ``recipes.adversarial_model`` (read by
    intercepting the call: nothing is trained), without ``directory``."""
    def capture(_ds, **kwargs):
        raise _Captured(kwargs)

    with mock.patch.object(recipes, "adversarial_model", side_effect=capture):
        try:
            recipes.course_model(ds, kind, seed=0)
        except _Captured as found:
            return {k: v for k, v in found.args[0].items() if k != "directory"}
    raise RuntimeError(f"recipes.course_model(ds, {kind!r}) did not call recipes.adversarial_model")


def _expect(kind, kwargs, ds, **expected):
    """Stop unless today's recipe ``kind`` still is what the candidate descriptions say."""
    per_epoch = schedules.steps_per_epoch(len(ds.x_train), 64)
    for name, want in expected.items():
        have = kwargs.get(name)
        if name == "learning_rate":  # a schedule: compare its configuration (what the cache key records)
            have = keras.optimizers.schedules.serialize(have) if callable(have) else have
            want = keras.optimizers.schedules.serialize(schedules.warmup_cosine(2e-3, steps=want * per_epoch))
        if have != want:
            raise SystemExit(f"recipes.course_model(ds, {kind!r}) changed: {name}={have!r}, the --schedules "
                             f"candidates assume {want!r}; revise schedule_candidates")


def schedule_candidates(ds):
    """name -> (description, keyword arguments of ``recipes.adversarial_model``) for ``--schedules``.

    Each candidate is today's recipe — the very arguments ``recipes.course_model`` passes (``course_arguments``),
    schedule object and KL-PGD ``step_size=round(eps / 6, 6)`` included — with only the attack's steps and/or the
    learning rate replaced, so ``pgd4_cosine`` and ``trades30_cosine`` *are* today's ``"pgd"`` and ``"robust"``
    (``check_course_keys`` verifies the cache file) and every other candidate differs from them in nothing else.
    """
    pgd = course_arguments(ds, "pgd")
    _expect("pgd", pgd, ds, attack="pgd", eps=EPS, mode="adversarial", epochs=20, batch_size=64, seed=0,
            attack_kwargs={"steps": 4}, learning_rate=20)
    trades = course_arguments(ds, "robust")
    _expect("robust", trades, ds, attack="pgd", eps=EPS, mode="trades", beta=6.0, epochs=30, batch_size=64, seed=0,
            attack_kwargs={"steps": 10, "step_size": round(EPS / 6, 6)}, learning_rate=30)
    pgd7 = {"steps": 7}  # default step 2.5·ε/7
    return {
        "pgd4_cosine": ("PGD-4, warm-up + cosine to 2e-3 (today's `\"pgd\"`)", pgd),
        "pgd7_cosine": ("PGD-7, warm-up + cosine to 2e-3", dict(pgd, attack_kwargs=pgd7)),
        "pgd4_const": ("PGD-4, constant 1e-3", dict(pgd, learning_rate=1e-3)),
        "pgd7_const": ("PGD-7, constant 1e-3", dict(pgd, attack_kwargs=pgd7, learning_rate=1e-3)),
        "trades30_cosine": ("TRADES, warm-up + cosine to 2e-3 (today's `\"robust\"`)", trades),
        "trades30_const": ("TRADES, constant 1e-3", dict(trades, learning_rate=1e-3)),
    }


#: ``--schedules``: recipe -> (its candidates, the first one being today's recipe, and the ``course_model`` kind it
#: equals).  Each recipe is a search of its own, with its own winner and its own single look at the test set.
SCHEDULE_GROUPS = {
    "pgd": (["pgd4_cosine", "pgd7_cosine", "pgd4_const", "pgd7_const"],
            "the `\"pgd\"` recipe: PGD adversarial-only training (step 2.5·ε/steps), 20 epochs of batch 64, seed 0"),
    "robust": (["trades30_cosine", "trades30_const"],
               "the `\"robust\"` recipe: TRADES β = 6, KL-PGD 10 steps of ε/6, 30 epochs of batch 64, seed 0"),
}


def _cache_path(call, cache):
    """The cache file ``call()`` (a ``recipes`` call) would read or write, found without training."""
    def capture(key, *_, **__):
        raise _Captured(key)

    with mock.patch.object(recipes, "load_or_train", side_effect=capture):
        try:
            call()
        except _Captured as found:
            return modelcache.cache_file(found.args[0], cache)
    raise RuntimeError("the recipe did not reach modelcache.load_or_train")


def check_course_keys(ds, pool, cache):
    """Fail unless the first candidate of each ``SCHEDULE_GROUPS`` recipe has ``course_model``'s very cache file."""
    for kind, (names, _) in SCHEDULE_GROUPS.items():
        course = _cache_path(lambda: recipes.course_model(ds, kind, seed=0, directory=cache), cache)
        ours = _cache_path(lambda: recipes.adversarial_model(ds, directory=cache, **pool[names[0]][1]), cache)
        if course != ours:
            raise SystemExit(f"{names[0]} is not recipes.course_model(ds, {kind!r}): cache file {ours.name} "
                             f"against {course.name}")
        print(f"{names[0]} == recipes.course_model(ds, {kind!r}): same cache file {ours.name}", file=sys.stderr)


def train_adversarial(ds, kwargs, cache):
    """``(model, wall-clock seconds)`` of one ``recipes.adversarial_model`` candidate."""
    start = time.perf_counter()
    model, _ = recipes.adversarial_model(ds, eps=EPS, batch_size=64, seed=0, directory=cache, **kwargs)
    return model, time.perf_counter() - start


def train_ibp(ds, kwargs, cache):
    """``(model, seconds)`` of one ``recipes.ibp_model`` candidate: the sum of its epoch times, also from the cache."""
    model, history = recipes.ibp_model(ds, eps=EPS, seed=0, directory=cache, **kwargs)
    return model, sum(history["time"])


def train_adversarial_timed(ds, kwargs, cache):
    """``(model, seconds)`` of one ``--schedules`` candidate (all of ``recipes.adversarial_model``'s arguments but
    ``directory``): the sum of its epoch times (kept in the cached history, so a rerun from the cache reports the
    time of the run that trained it)."""
    model, history = recipes.adversarial_model(ds, directory=cache, **kwargs)
    return model, sum(history["time"])


def score_strong(model, x, y):
    """Clean accuracy and ``evaluate.strong_accuracy`` at ε."""
    strong = evaluate.strong_accuracy(model, x, y, EPS)
    return {"clean": evaluate.accuracy(model, x, y), "APGD-CE": strong["apgd-ce"], "APGD-DLR": strong["apgd-dlr"],
            "Square": strong["square"], "worst case": strong["worst"]}


def score_certified(model, x, y):
    """Clean accuracy and certified accuracy at ε."""
    return {"clean": evaluate.accuracy(model, x, y), "certified": certify.certified_accuracy(model, x, y, EPS)}


def score_schedule(model, x, y):
    """Clean accuracy, PGD-40 × 3 restarts (step 0.01) and ``evaluate.strong_accuracy`` at ε, with the per-image
    worst case under ``"_robust"`` (``evaluate.strong_robust``, which ``strong_accuracy`` averages: one run)."""
    x_adv = attacks.pgd(model, x, y, EPS, steps=40, step_size=0.01, restarts=3, seed=0, early_stop=True)
    held = evaluate.strong_robust(model, x, y, EPS)
    return {"clean": evaluate.accuracy(model, x, y), "PGD-40×3": evaluate.accuracy(model, x_adv, y),
            "APGD-CE": float(np.mean(held["apgd-ce"])), "APGD-DLR": float(np.mean(held["apgd-dlr"])),
            "Square": float(np.mean(held["square"])), "worst case": float(np.mean(held["worst"])),
            "_robust": held["worst"]}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" the b + c discordant images split Binomial(b + c, ½)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_interval(a_ok, b_ok) -> tuple[float, float]:
    """95 % interval of accuracy(a) − accuracy(b) on the same images: Newcombe's (1998) method 10 (Wilson based)."""
    a_ok, b_ok = np.asarray(a_ok, bool), np.asarray(b_ok, bool)
    n = len(a_ok)
    both, only_a = int(np.sum(a_ok & b_ok)), int(np.sum(a_ok & ~b_ok))
    only_b, neither = int(np.sum(~a_ok & b_ok)), int(np.sum(~a_ok & ~b_ok))
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = report.wilson_interval(both + only_a, n)
    l2, u2 = report.wilson_interval(both + only_b, n)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(denom) if denom > 0 else 0.0
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return low, high


def paired_against(chosen_ok, other_ok) -> dict:
    """The chosen candidate against another, image by image: b = only the chosen one right, c = only the other."""
    chosen_ok, other_ok = np.asarray(chosen_ok, bool), np.asarray(other_ok, bool)
    b, c = int(np.sum(chosen_ok & ~other_ok)), int(np.sum(~chosen_ok & other_ok))
    low, high = paired_interval(chosen_ok, other_ok)
    out = {"b": b, "c": c, "p": mcnemar_exact(b, c), "low": low, "high": high}
    if hasattr(report, "paired_difference"):  # the project's own helper, when it exists: shown beside ours
        try:
            out["report"] = str(report.paired_difference(chosen_ok, other_ok))
        except Exception as err:  # noqa: BLE001 - its signature is not settled yet; ours stands on its own
            print(f"report.paired_difference(chosen, other) failed ({err!r}); using this script's test only",
                  file=sys.stderr)
    return out


#: family -> (candidates, train, score, the score that decides, what the training time column measures)
FAMILIES = {"robust": (candidates, train_adversarial, score_strong, "worst case", "trained in"),
            "ibp": (lambda ds: ibp_candidates(), train_ibp, score_certified, "certified",
                    "trained in (sum of epoch times)"),
            "schedules": (schedule_candidates, train_adversarial_timed, score_schedule, "worst case",
                          "trained in (sum of epoch times)")}


def search(ds, family, names, cache):
    """Train every candidate, score it on validation, report the best on the test set (the only look at it).

    Returns the Markdown lines it printed.  When the scores carry per-image outcomes (``"_robust"``), the table also
    compares the chosen candidate with every other one on the same validation images.
    """
    make_pool, train, score, decides, time_label = family
    pool, rows, trained, lines = make_pool(ds), {}, {}, []

    def say(line=""):
        print(line, flush=True)
        lines.append(line)

    for name in names:
        models.seed_everything(0)
        trained[name], seconds = train(ds, pool[name][1], cache)
        start = time.perf_counter()
        rows[name] = {"seconds": seconds, **score(trained[name], ds.x_val, ds.y_val)}
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[name].items() if not k.startswith("_"))
              + f" (validation scored in {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    best = max(rows, key=lambda n: rows[n][decides])  # ties: the first listed
    columns = [c for c in rows[best] if c != "seconds" and not c.startswith("_")]
    paired = {n: paired_against(rows[best]["_robust"], rows[n]["_robust"])
              for n in rows if n != best} if "_robust" in rows[best] else None
    extra = ["b / c", "exact McNemar p", f"paired 95 % interval of {decides} (chosen − this)"] if paired else []
    if paired and any("report" in p for p in paired.values()):
        extra.append("`report.paired_difference`")
    say(f"| candidate | {time_label} | " + " | ".join(f"val {c}" for c in columns)
        + "".join(f" | {c}" for c in extra) + " |")
    say("| --- | ---: |" + " ---: |" * len(columns) + " ---: |" * len(extra))
    for name, r in rows.items():
        cells = [f"{r[c]:.3f}" for c in columns]
        if paired and name == best:
            cells += ["—"] * len(extra)
        elif paired:
            p = paired[name]
            cells += [f"{p['b']} / {p['c']}", f"{p['p']:.3g}",
                      f"{100 * (rows[best][decides] - r[decides]):+.1f} points "
                      f"[{100 * p['low']:+.1f}, {100 * p['high']:+.1f}]"]
            if len(extra) == 4:
                cells.append(p.get("report", "—"))
        label = f"**{pool[name][0]}** (chosen)" if name == best else pool[name][0]
        say(f"| {label} | {r['seconds']:.0f} s | " + " | ".join(cells) + " |")
    n_val = len(ds.x_val)
    low, high = report.wilson_interval(0.5, n_val)
    say(f"\n`{best}` chosen by validation {decides} ({n_val:,} images: a single figure's 95 % interval is at most "
        f"±{100 * (high - low) / 2:.1f} points).")
    if paired:
        say(f"b = validation images only the chosen candidate keeps under the {decides}, c = only the other one; "
            "exact McNemar p (two-sided) of b against c; paired interval: Newcombe (1998, method 10).  "
            + "; ".join(f"against `{n}`: " + ("a real difference" if p["low"] > 0 or p["high"] < 0
                                              else "within noise") for n, p in paired.items()) + ".")
    start = time.perf_counter()
    test = score(trained[best], ds.x_test, ds.y_test)
    say(f"\nChosen on validation: {pool[best][0]}; on the {len(ds.x_test):,} test images (the only look at them): "
        + ", ".join(f"{c} {v:.3f}" for c, v in test.items() if not c.startswith("_"))
        + f" ({time.perf_counter() - start:.0f} s).")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=None,
                        help="default: pgd40 trades30, or with --ibp / --schedules every candidate of that family")
    parser.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ibp", action="store_true", help="search the certified (IBP) recipe instead")
    which.add_argument("--schedules", action="store_true",
                       help="re-choose the schedule of the 'pgd' and 'robust' recipes (two searches)")
    parser.add_argument("--output", default=None, help="also write the Markdown here, with a header")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    kind = "ibp" if args.ibp else "schedules" if args.schedules else "robust"
    family = FAMILIES[kind]
    pool = family[0](ds)
    names = args.candidates or (["pgd40", "trades30"] if kind == "robust" else list(pool))
    unknown = set(names) - set(pool)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {sorted(pool)}")
    cache = args.cache or tempfile.mkdtemp(prefix="recipe-search-")
    started, version = datetime.datetime.now().astimezone(), modelcache.code_version()
    if kind == "schedules":
        check_course_keys(ds, pool, cache)
        lines = []
        for recipe, (group, title) in SCHEDULE_GROUPS.items():
            chosen = [n for n in group if n in names]
            if chosen:
                print(f"\n## {title}\n", flush=True)
                lines += [f"## {title}", ""] + search(ds, family, chosen, cache) + [""]
    else:
        lines = search(ds, family, names, cache)
    if args.output:
        command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])]
                                      + list(sys.argv[1:] if argv is None else argv))
        header = [f"# Recipe choice on the validation split (`mnist_5k`, ε = {EPS})", "",
                  f"Generated by `{command}` (niceness {os.nice(0)}), started {started:%a %b %d %H:%M:%S %Z %Y}, "
                  f"{(datetime.datetime.now().astimezone() - started).total_seconds() / 60:.1f} min in all.  "
                  f"Machine: {os.cpu_count()} CPU cores.  Every time was measured **while another training benchmark "
                  "ran on the same machine**, so all times are inflated by the contention (compare them with each "
                  "other, not with the README).  Candidates are trained from scratch on the 3,500 training images "
                  "(seed 0) and scored on the 500 validation images; only the chosen one of each recipe is scored "
                  "on the 1,000 test images, once.", ""]
        if modelcache.code_version() != version:  # others edited helpers/ while this ran
            header[-1:] = [f"**`helpers/` changed on disk during the run** (code version {version} at the start, "
                           f"{modelcache.code_version()} at the end): every model was trained by the modules this "
                           f"process imported at the start ({version}), but cache files written later carry the "
                           "later version in their name.", ""]
        else:
            header[-2] += f"  Code version (`modelcache.code_version()`): {version}."
        with open(args.output, "w") as fh:
            fh.write("\n".join(header + lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
