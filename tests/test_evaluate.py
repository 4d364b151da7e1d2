import numpy as np
import pytest

from helpers import attacks, evaluate


def test_accuracy_and_predict(shipped_model, batch):
    x, y = batch
    pred, conf = evaluate.predict(shipped_model, x)
    assert pred.shape == (len(x),) and pred.dtype == np.int64
    assert np.all((conf > 0) & (conf <= 1))
    assert evaluate.accuracy(shipped_model, x, y) == pytest.approx(np.mean(pred == y))
    assert evaluate.accuracy(shipped_model, x, (y + 1) % 10) < 0.1


@pytest.mark.slow
def test_accuracy_under_attack(trained_model, batch):
    x, y = batch
    curve = evaluate.accuracy_under_attack(trained_model, x, y, "fgsm", [0.0, 0.1, 0.3])
    assert list(curve) == [0.0, 0.1, 0.3]
    assert curve[0.0] == pytest.approx(evaluate.accuracy(trained_model, x, y))
    assert curve[0.3] < curve[0.1] < curve[0.0]
    pgd = evaluate.accuracy_under_attack(trained_model, x, y, attacks.pgd, [0.1], steps=5, seed=0)
    assert pgd[0.1] <= curve[0.1]
    noise = evaluate.accuracy_under_attack(trained_model, x, y, "noise", [0.1], seed=0)
    assert noise[0.1] > curve[0.1]
    for rule in ("raw", "max", "l2", "sign"):
        assert set(evaluate.accuracy_under_attack(trained_model, x[:20], y[:20], rule, [0.05])) == {0.05}


@pytest.mark.slow
def test_targeted_success_rate_and_matrix(trained_model, batch):
    x, y = batch
    one_step = evaluate.targeted_success_rate(trained_model, x, y, 3, attack="fgsm", eps=0.2)
    multi = evaluate.targeted_success_rate(trained_model, x, y, 3, attack="pgd", eps=0.2, steps=10, seed=0)
    assert 0.0 <= one_step < multi <= 1.0 and multi > 0.6
    m = evaluate.success_matrix(trained_model, x[:100], y[:100], "fgsm", 0.2)
    assert m.shape == (10, 10)
    assert np.all(np.isnan(np.diag(m)))
    off = m[~np.eye(10, dtype=bool)]
    assert np.all((off[~np.isnan(off)] >= 0) & (off[~np.isnan(off)] <= 1))


def test_perturbation_norms_and_confusion():
    x = np.zeros((2, 2, 2, 1), np.float32)
    adv = x.copy()
    adv[0, 0, 0, 0] = 0.3
    adv[1] = 0.1
    n = evaluate.perturbation_norms(x, adv)
    np.testing.assert_allclose(n["linf"], [0.3, 0.1], rtol=1e-6)
    np.testing.assert_allclose(n["l2"], [0.3, 0.2], rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        evaluate.perturbation_norms(x, adv[:1])
    cm = evaluate.confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_bad_arguments(shipped_model, batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"attack='cw'.*'fgsm'"):
        evaluate.accuracy_under_attack(shipped_model, x, y, "cw", [0.1])
    with pytest.raises(ValueError, match=r"eps=-0.1"):
        evaluate.accuracy_under_attack(shipped_model, x, y, "fgsm", [0.1, -0.1])
    with pytest.raises(ValueError, match="at least one"):
        evaluate.accuracy_under_attack(shipped_model, x, y, "fgsm", [])
    with pytest.raises(ValueError, match="same length"):
        evaluate.accuracy(shipped_model, x, y[:3])
    with pytest.raises(ValueError, match="already belongs"):
        evaluate.targeted_success_rate(shipped_model, x[y == 3][:4], y[y == 3][:4], 3)


@pytest.mark.slow
def test_noise_is_a_baseline_for_targeted_success_too(trained_model, batch):
    x, y = batch
    rate = evaluate.targeted_success_rate(trained_model, x, y, 3, "noise", 0.3, seed=0)
    pgd_rate = evaluate.targeted_success_rate(trained_model, x, y, 3, "pgd", 0.3, steps=10, seed=0)
    assert 0.0 <= rate < 0.2 < pgd_rate
    m = evaluate.success_matrix(trained_model, x[:60], y[:60], "noise", 0.1, seed=0)
    assert m.shape == (10, 10) and np.all(np.isnan(np.diag(m))) and np.nanmax(m) < 0.5


def test_eps_messages_name_pixel_units_only_for_budgets():
    from helpers._checks import check_eps

    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0 \(in pixel-value units"):
        check_eps(-1.0)
    with pytest.raises(ValueError) as info:
        check_eps(-1.0, "beta")
    assert "pixel" not in str(info.value) and "beta must be a finite number >= 0" in str(info.value)
