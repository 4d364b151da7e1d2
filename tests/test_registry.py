"""The attack registry: one entry per attack, read by evaluate, training, recipes and the cache keys."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import attacks, autoattack, evalcache, evaluate, modelcache, recipes, registry, training

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
    assert set(registry.modules(training=True)) | {"registry"} <= set(modelcache._WEIGHT_MODULES)


def test_a_new_attack_is_one_entry_and_the_evaluation_key_sees_its_module(tmp_path, monkeypatch):
    """Add an entry whose function lives in another module: evaluate accepts its name, and editing that module
    changes every evaluation's key (evalcache reads the registry's modules)."""
    folder = tmp_path / "helpers"
    shutil.copytree(PACKAGE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    entry = registry.Attack("bim", attacks.pgd, "certify", measure_kwargs={"random_start": False})
    monkeypatch.setattr(registry, "ATTACKS", registry.ATTACKS + (entry,))
    monkeypatch.setattr(registry, "_BY_NAME", {**registry._BY_NAME, "bim": entry})
    monkeypatch.setattr(registry, "MEASURED", registry.MEASURED + ("bim",))
    assert evaluate.resolve_attack("bim").keywords == {"random_start": False}
    before = evalcache.code_version(folder)
    (folder / "certify.py").write_text((folder / "certify.py").read_text() + "\n_EDITED = 1\n")
    assert evalcache.code_version(folder) != before


def test_randomness_comes_from_the_registry():
    pgd, square, fgsm = registry.get("pgd"), registry.get("square"), registry.get("fgsm")
    assert registry.draws_randomness(pgd, {}) and not registry.draws_randomness(pgd, {"seed": 0})
    assert not registry.draws_randomness(pgd, {"random_start": False})
    assert not registry.draws_randomness(square, {}) and registry.draws_randomness(square, {"seed": None})
    assert not registry.draws_randomness(fgsm, {})
    with pytest.raises(KeyError, match="known"):
        registry.get("cw")


def test_named_training_attacks_are_called_as_before(monkeypatch):
    """make_attack through the registry passes what it passed before: FGSM nothing; PGD 7 steps by default;
    FGSM-RS one PGD step from a random start of 1.25·ε (read from ε when the step runs) unless told otherwise."""
    calls = []
    for name in registry.TRAINING:
        recorder = (lambda name: lambda model, x, y, eps, **kw: calls.append((name, eps, kw)))(name)
        monkeypatch.setitem(registry._BY_NAME, name, registry.get(name)._replace(function=recorder))
    for name, kwargs in [("fgsm", None), ("pgd", None), ("pgd", {"steps": 3, "norm": "l2"}), ("fgsm_rs", None),
                         ("fgsm_rs", {"step_size": 0.05})]:
        training.make_attack(name, 0.2, kwargs)("model", "x", "y")
    step = calls[3][2].pop("step_size")
    assert float(step) == pytest.approx(1.25 * 0.2)
    assert calls == [("fgsm", 0.2, {}), ("pgd", 0.2, {"steps": 7}), ("pgd", 0.2, {"steps": 3, "norm": "l2"}),
                     ("fgsm_rs", 0.2, {"steps": 1, "random_start": True}),
                     ("fgsm_rs", 0.2, {"steps": 1, "random_start": True, "step_size": 0.05})]
    functions = {a.name: a.function for a in registry.ATTACKS}   # (the registry itself, not the recorders)
    assert functions["fgsm"] is attacks.fgsm and functions["pgd"] is functions["fgsm_rs"] is attacks.pgd


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
