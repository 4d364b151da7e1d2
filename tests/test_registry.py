"""The attack registry: one entry per attack, read by evaluate, training, recipes and the cache keys."""

import ast
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import attacks, autoattack, evalcache, evaluate, recipes, registry, training

PACKAGE = Path(registry.__file__).resolve().parent


def linear():
    inputs = keras.Input((2, 2, 1))
    return keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="ones")(keras.layers.Flatten()(inputs)))


@pytest.mark.parametrize("name", ["fgsm", "fgsm_rs", "pgd"])
def test_training_refuses_a_targeted_attack(name):
    """Misbehaviour 7: FGSM training took targeted=True and trained toward the true label."""
    with pytest.raises(ValueError, match="targeted"):
        training.make_attack(name, 0.1, {"targeted": True})
    with pytest.raises(ValueError, match="untargeted"):
        training.AdversarialModel(linear(), attack=name, eps=0.1, attack_kwargs={"targeted": True})


def test_training_refuses_targeted_for_a_callable_attack_too():
    with pytest.raises(ValueError, match="untargeted"):
        training.make_attack(lambda model, x, y, eps, targeted=False: x, 0.1, {"targeted": True})


def test_every_name_reads_the_registry():
    assert registry.TRAINING == ("fgsm", "fgsm_rs", "pgd")
    assert registry.MEASURED == ("fgsm", "pgd", "noise", "raw", "max", "l2", "sign", "apgd", "square")
    assert evaluate.resolve_attack("fgsm") is attacks.fgsm and evaluate.resolve_attack("apgd") is autoattack.apgd
    assert evaluate.resolve_attack("pgd").keywords == {"early_stop": True}
    assert registry.find(attacks.pgd).name == "pgd" and registry.find(autoattack.square).name == "square"
    assert registry.modules() == ("attacks", "autoattack") and registry.modules(training=True) == ("attacks",)
    assert set(registry.modules(training=True)) <= set(recipes._WEIGHT_MODULES)
    assert set(registry.modules()) <= set(evalcache._SOURCES + registry.modules())


def test_randomness_comes_from_the_registry():
    pgd, square, fgsm = registry.get("pgd"), registry.get("square"), registry.get("fgsm")
    assert registry.draws_randomness(pgd, {}) and not registry.draws_randomness(pgd, {"seed": 0})
    assert not registry.draws_randomness(pgd, {"random_start": False})
    assert not registry.draws_randomness(square, {}) and registry.draws_randomness(square, {"seed": None})
    assert not registry.draws_randomness(fgsm, {})
    with pytest.raises(KeyError, match="known"):
        registry.get("cw")


def test_named_training_attacks_compute_as_before():
    """make_attack through the registry: FGSM is attacks.fgsm; PGD defaults to 7 steps (BIM without a random
    start, so deterministic)."""
    model = linear()
    x = np.random.default_rng(0).random((4, 2, 2, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    np.testing.assert_array_equal(training.make_attack("fgsm", 0.1)(model, x, y), attacks.fgsm(model, x, y, 0.1))
    bim = training.make_attack("pgd", 0.1, {"random_start": False})(model, x, y)
    np.testing.assert_allclose(bim, attacks.pgd(model, x, y, 0.1, steps=7, random_start=False), atol=1e-6)


def _reached_from(name) -> set:
    """The modules of the package that module ``name`` imports at its top level, directly or through others."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module in seen or not (PACKAGE / f"{module}.py").exists():
            continue
        seen.add(module)
        for node in ast.parse((PACKAGE / f"{module}.py").read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [node.module] if node.module else [a.name for a in node.names]
    return seen


def test_measuring_a_model_does_not_reach_the_training_stack():
    reached = _reached_from("evaluate")
    assert not reached & {"training", "recipes", "wrapper", "schedules"}, reached
    assert "autoattack" not in _reached_from("attacks")  # no circle attacks <-> autoattack


@pytest.mark.slow  # a fresh Python importing TensorFlow: 4-17 s (the AST test above is the quick loop's guard)
def test_importing_evaluate_does_not_import_training_or_recipes():
    code = ("import sys, helpers.evaluate; bad = {'helpers.training', 'helpers.recipes'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent, env={"PYTHONPATH": str(PACKAGE.parent),
                   "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
