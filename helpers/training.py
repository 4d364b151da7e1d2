"""Adversarial training: make adversarial examples from the *current* model inside every training step.

Madry et al. (2018) frame robust training as a saddle-point problem: the inner attack maximises the loss around
each training example, the outer optimiser minimises the loss at those worst-case points.  Each step therefore
(1) attacks the batch with the model as it is now, (2) stops the gradient through the attack (the weights are
trained on the adversarial *points*, not through the attack's computation), (3) takes an optimiser step on the
clean + adversarial batch (``mode="double"``, Goodfellow et al. 2015) or the adversarial batch alone
(``mode="adversarial"``, Madry et al. 2018).

``AdversarialModel`` is that step written as a Keras ``train_step`` (the Keras guide "Customizing what happens in
fit()"), so everything ``fit`` brings works as usual: History, callbacks (``EarlyStopping``, learning-rate
schedules, the ``EpsWarmup`` below), the progress bar, ``tf.data`` input, ``tf.distribute`` strategies,
``jit_compile``, loss scaling under mixed precision.  ``adversarial_train`` is a thin convenience over it.
``IBPModel`` trains for *certified* robustness the same way, on the worst case that interval bounds allow.
This module holds the mechanics only; the course's recipes and the model cache live in ``helpers.recipes``.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings

import numpy as np

from . import registry
from .attacks import loss_gradient
from ._checks import check_choice, check_eps, check_images, check_labels, check_positive_int
from .models import existing_optimizer
from .wrapper import WrapperModel

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

MODES = ("double", "adversarial", "trades")
#: Validation images per compiled test step in ``adversarial_train``: large batches amortise the per-step overhead
#: of attacking the validation split after every epoch (the figures do not depend on it).
VALIDATION_BATCH = 500
_RANGE_MESSAGE = "images must lie in [0, 1]"  # the in-graph check of streamed batches, turned into a ValueError


def make_attack(attack, eps, attack_kwargs=None):
    """``fn(model, x, y) -> x_adv`` (TF code, traced into a training or test step) for a named or callable attack.

    ``attack``: a training attack of ``helpers.registry`` — ``"fgsm"``; ``"fgsm_rs"`` — FGSM from a uniform random
    start with step 1.25·ε (Wong, Rice & Kolter 2020, "Fast is better than free"): one PGD step from a random point
    of the ε-ball, which resists the catastrophic overfitting of plain FGSM training at the same cost; ``"pgd"`` —
    default 7 steps of 2.5·ε/7 from a random start; or a callable ``(model, x, y, eps) -> x_adv`` written in
    TensorFlow ops.  ``eps`` may be a ``tf.Variable`` (read when the step runs, so an ε warm-up needs no
    retracing); default step sizes follow it.  Training attacks are untargeted: ``targeted`` is refused (a targeted
    attack aimed at the true label would train the model *toward* it).
    """
    kwargs = dict(attack_kwargs or {})
    if "targeted" in kwargs:
        raise ValueError(f"attack_kwargs={{'targeted': {kwargs['targeted']!r}}}: training attacks are untargeted "
                         f"(a targeted attack would push each image toward its own label); drop 'targeted'")
    if callable(attack):
        return lambda model, x, y: attack(model, x, y, eps, **kwargs)
    if not isinstance(attack, str):
        names = ", ".join(repr(name) for name in registry.TRAINING)
        raise TypeError(f"attack must be {names} or a callable (model, x, y, eps) -> x_adv, got {attack!r}")
    check_choice("attack", attack, registry.TRAINING)
    entry = registry.get(attack)
    bad = set(kwargs) - entry.training
    if bad:
        raise ValueError(f"attack_kwargs {sorted(bad)} are not accepted by {attack!r} in training; allowed: "
                         f"{sorted(entry.training)}")
    defaults = entry.training_defaults or (lambda eps: {})
    # the defaults are made when the step is traced: a step size that follows a warming-up ε reads the variable
    return lambda model, x, y: entry.function(model, x, y, eps, **{**defaults(eps), **kwargs})


def trades_attack(model, x, eps, *, steps: int = 10, step_size=None):
    """TRADES' inner maximisation (Zhang et al. 2019), TF code: PGD on the KL divergence between the model's clean
    prediction and its prediction at ``x'``, from a tiny random start, in the L∞ ball of radius ``eps`` ∩ [0, 1].

    Unlike ``attacks.pgd`` it needs no labels: it pushes the prediction *away from the clean one*, whatever that is.
    ``step_size`` defaults to 2.5·ε/steps.  The gradient comes from ``attacks.loss_gradient``, so on a
    mixed-precision model it is rescaled as the attacks' own (a confident image's KL gradient underflows in float16).
    """
    eps = tf.cast(eps, tf.float32)
    step = 2.5 * eps / steps if step_size is None else tf.cast(step_size, tf.float32)
    p_clean = tf.stop_gradient(tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)))
    x_adv = tf.clip_by_value(x + 0.001 * tf.random.normal(tf.shape(x)), 0.0, 1.0)
    for _ in range(steps):
        _, grad, _ = loss_gradient(model, x_adv, p_clean, loss_fn=_kl_from)
        x_adv = x_adv + step * tf.sign(grad)
        x_adv = tf.clip_by_value(x + tf.clip_by_value(x_adv - x, -eps, eps), 0.0, 1.0)
    return tf.stop_gradient(x_adv)


def _kl_from(logits, p_clean):
    """Per-example KL(p_clean ‖ softmax(logits)): the objective of ``trades_attack`` (a ``loss_fn(logits, y)``)."""
    return tf.reduce_sum(p_clean * (tf.math.log(p_clean + 1e-12) - tf.nn.log_softmax(logits)), axis=-1)


class AdversarialModel(WrapperModel):
    """Wraps a classifier (logits out) and trains it, in place, on adversarial examples made at every step.

    ``AdversarialModel(classifier, attack="pgd", eps=0.3, mode="adversarial").compile(optimizer="adam")``, then
    ``fit(x, y, validation_data=(x_val, y_val), ...)`` as for any Keras model.  The History holds ``loss``,
    ``clean_accuracy`` and ``adv_accuracy`` (training batches, under the training attack) and, with validation data,
    ``val_loss``, ``val_clean_accuracy``, ``val_adv_accuracy`` (under ``validation_attack``, default: the training
    attack, always at the full ``eps`` even while ``EpsWarmup`` ramps the training attack).
    ``mode="trades"`` trains with the TRADES loss (Zhang et al. 2019) instead: ``CE(f(x), y) + beta · KL(f(x) ‖
    f(x'))``, with ``x'`` from ``trades_attack`` (``attack_kwargs``: ``steps``, ``step_size``); it trades clean
    accuracy against robustness through ``beta`` (6 in the paper).  Validation then uses PGD unless told otherwise.
    ``evaluate(x, y)`` reports the same figures on any data.  Build the classifier inside a
    ``tf.distribute`` strategy's scope to train on several devices; ``fit`` may then be called inside or outside it.
    """

    def __init__(self, classifier, *, attack="pgd", eps, mode="double", attack_kwargs=None,
                 validation_attack=None, validation_attack_kwargs=None, beta: float = 6.0, eps_warmup="auto",
                 **kwargs):
        if eps_warmup != "auto":
            check_positive_int(eps_warmup, "eps_warmup", minimum=0)
        check_choice("mode", mode, MODES)
        super().__init__(classifier, eps=eps, **kwargs,
                         third=lambda: keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy"))
        self.eps_warmup, self.mode = eps_warmup, mode
        with self.distribute_strategy.scope():
            self.train_eps = self.add_weight(name="train_eps", shape=(), trainable=False,
                                             initializer=keras.initializers.Constant(self.eps))
        if mode == "trades":
            self.beta = check_eps(beta, "beta")
            bad = set(attack_kwargs or {}) - {"steps", "step_size"}
            if attack != "pgd" or bad:
                raise ValueError(f"mode='trades' uses its own KL attack: attack must be 'pgd' (got {attack!r}) and "
                                 f"attack_kwargs only 'steps' and 'step_size' (got {sorted(attack_kwargs or {})})")
            kl_kwargs = dict(attack_kwargs or {})
            self.attack = lambda model, x, y: trades_attack(model, x, self.train_eps, **kl_kwargs)
        else:
            self.attack = make_attack(attack, self.train_eps, attack_kwargs)
        default_kwargs = {"steps": 10} if mode == "trades" else attack_kwargs
        self.validation_attack = make_attack(attack if validation_attack is None else validation_attack, self.eps,
                                             default_kwargs if validation_attack is None else validation_attack_kwargs)
        #: What this wrapper trains with (read by ``warmup_epochs``; not Keras' ``get_config``: not serialisable).
        self.recipe = dict(attack=getattr(attack, "__name__", attack), eps=self.eps, mode=mode,
                           attack_kwargs=dict(attack_kwargs or {}))

    def warmup_epochs(self, epochs: int) -> int:
        """The epochs over which ``fit`` ramps ε (``EpsWarmup``): ``eps_warmup`` if it is a number, else ("auto")
        a quarter of ``epochs`` for PGD training on adversarial examples only, and 0 (no ramp) otherwise.

        Why: a fresh model trained only on multi-step attacks at the full ε often never leaves chance
        (``benchmarks/stall_rate.py``: 3 of 5 seeds of PGD-7 at ε = 0.3 on mnist_5k without a ramp).  FGSM, the
        double batch and TRADES keep a clean signal and do not need it."""
        if self.eps_warmup != "auto":
            _check_warmup(self.eps_warmup, epochs)
            return int(self.eps_warmup)
        strong = self.recipe["attack"] == "pgd" and self.mode == "adversarial"
        return max(1, int(epochs) // 4) if strong and int(epochs) > 1 else 0

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``, plus two callbacks unless ``callbacks`` already holds one of their kind: an
        ``EpsWarmup`` over ``warmup_epochs(epochs)`` epochs (when that is > 0) and a ``StallMonitor``, which warns
        when accuracy under the training attack stays at chance."""
        callbacks = list(callbacks or [])
        epochs = kwargs.get("epochs", args[3] if len(args) > 3 else 1)
        warmup = self.warmup_epochs(epochs)
        for ramp in callbacks:
            if isinstance(ramp, EpsWarmup):
                _check_warmup(ramp.epochs, epochs)
        if warmup and not any(isinstance(c, EpsWarmup) for c in callbacks):
            callbacks.insert(0, EpsWarmup(warmup))
        if not any(isinstance(c, StallMonitor) for c in callbacks):
            callbacks.insert(0, StallMonitor())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def train_step(self, data):
        x, y = self.unpack(data)
        tf.debugging.assert_less_equal(tf.reduce_max(x), 1.0, message=_RANGE_MESSAGE)
        tf.debugging.assert_greater_equal(tf.reduce_min(x), 0.0, message=_RANGE_MESSAGE)
        # Inner maximisation: attack the model as it is now; the weights learn at these points, not through them.
        x_adv = tf.stop_gradient(self.attack(self.classifier, x, y))
        if self.mode == "trades":
            return self._trades_step(x, x_adv, y)
        x_in, y_in = (tf.concat([x, x_adv], 0), tf.concat([y, y], 0)) if self.mode == "double" else (x_adv, y)
        with tf.GradientTape() as tape:  # outer minimisation: an ordinary training step on those points
            logits = self(x_in, training=True)
            loss = self.compute_loss(y=y_in, y_pred=logits)  # divided by the replica count under tf.distribute
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed precision (else unchanged)
        self.minimise(tape, scaled)
        n = tf.shape(x)[0]
        clean_logits = logits[:n] if self.mode == "double" else self(x, training=False)
        return self._update_metrics(loss, y, clean_logits, logits[-n:])

    def _trades_step(self, x, x_adv, y):
        """TRADES: cross-entropy on the clean batch + beta · KL(clean prediction ‖ prediction at x_adv)."""
        with tf.GradientTape() as tape:
            logits = self(tf.concat([x, x_adv], 0), training=True)
            clean, adv = tf.split(tf.cast(logits, tf.float32), 2)
            kl = keras.losses.KLDivergence()(tf.nn.softmax(clean), tf.nn.softmax(adv))  # scaled for replicas
            loss = self.compute_loss(y=y, y_pred=clean) + self.beta * kl
            scaled = self.optimizer.scale_loss(loss)
        self.minimise(tape, scaled)
        return self._update_metrics(loss, y, clean, adv)

    def test_step(self, data):
        x, y = self.unpack(data)
        x_adv = tf.stop_gradient(self.validation_attack(self.classifier, x, y))
        clean_logits, adv_logits = self(x, training=False), self(x_adv, training=False)
        if self.mode == "double":
            loss = self.compute_loss(y=tf.concat([y, y], 0), y_pred=tf.concat([clean_logits, adv_logits], 0))
        else:
            loss = self.compute_loss(y=y, y_pred=adv_logits)
        return self._update_metrics(loss, y, clean_logits, adv_logits)

    def _update_metrics(self, loss, y, clean_logits, adv_logits):
        self.third_metric.update_state(y, adv_logits)  # adv_accuracy
        return self.report(loss, y, clean_logits)


def _check_warmup(warmup, epochs):
    """Refuse an ε ramp longer than the run: its last epochs would never train at the full ε."""
    if int(warmup) > int(epochs):
        raise ValueError(f"eps_warmup={warmup} is longer than the run (epochs={epochs}): the training attack would "
                         f"never reach the full ε; ramp over at most {epochs} epochs (eps_warmup <= epochs; "
                         "\"auto\" ramps over a quarter of them)")


class EpsWarmup(keras.callbacks.Callback):
    """Ramp the training attack's ε linearly over the first ``epochs`` epochs (ε·1/n, ε·2/n, …, then ε), so training
    at a large ε does not start from an attack the fresh model cannot fit.  Logs the ε of each epoch as ``eps``.
    Validation stays at the full ε; with ``EarlyStopping``, pass ``start_from_epoch=epochs - 1`` so that only
    epochs trained at the full ε can be picked as the best.  ``AdversarialModel.fit`` refuses a ramp longer than
    its ``epochs`` (the run would end before the full ε)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = check_positive_int(epochs, "epochs")

    def on_epoch_begin(self, epoch, logs=None):
        self.model.train_eps.assign(self.model.eps * min(1.0, (epoch + 1) / self.epochs))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["eps"] = float(self.model.train_eps.numpy())


def find_collapse(pgd, own, *, level: float = 0.3, hold: int = 2, drop: float = 0.2, within: int = 2,
                  own_high: float = 0.7):
    """``(held, fell)``, the 0-based epochs of the first catastrophic collapse in a run's curves, or None.

    ``pgd``: validation accuracy under a multi-step attack per epoch; ``own``: accuracy under the training attack.
    A collapse (Wong, Rice & Kolter 2020): ``pgd`` holds ≥ ``level`` for ``hold`` epochs in a row (the last of them
    is ``held``), then within ``within`` epochs it is ≥ ``drop`` lower (at ``fell``) while ``own`` at ``fell`` is
    still ≥ ``own_high`` — the model still beats its training attack but no longer PGD.
    """
    for end in range(hold - 1, len(pgd)):
        if min(pgd[end - hold + 1:end + 1]) < level:
            continue
        for later in range(end + 1, min(end + within, len(pgd) - 1) + 1):
            if pgd[end] - pgd[later] >= drop and own[later] >= own_high:
                return end, later
    return None


class StallWarning(UserWarning):
    """Adversarial training has not left chance level (see ``StallMonitor``)."""


class StallMonitor(keras.callbacks.Callback):
    """Warn (and, with ``stop=True``, stop) when adversarial training stalls at chance.

    After each epoch: if, for the last ``patience`` epochs, both the accuracy on the training batches under the
    model's own attack (``adv_accuracy``) and their clean accuracy (``clean_accuracy``) have stayed within
    ``tolerance`` of chance (1 / number of classes; above or below it), warn once with a ``StallWarning`` that names
    the cause and the remedies, and record the epoch in ``stalled_at``.  A run of fewer than ``patience`` epochs is
    never reported, and neither is a model whose clean accuracy has left chance: robust training at a large ε sits
    near chance under attack for a while and still learns.  A model that answers one class for every image is
    otherwise handed back as if nothing happened (``EarlyStopping`` even restores it as "best").
    ``AdversarialModel.fit`` adds one unless its callbacks hold a ``StallMonitor``.
    """

    def __init__(self, patience: int = 3, tolerance: float = 0.05, stop: bool = False):
        super().__init__()
        self.patience = check_positive_int(patience, "patience")
        self.tolerance, self.stop = float(tolerance), bool(stop)
        self.stalled_at, self._curve = None, []

    def on_train_begin(self, logs=None):
        self.stalled_at, self._curve = None, []

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "adv_accuracy" not in logs or "clean_accuracy" not in logs or self.stalled_at is not None:
            return
        self._curve.append((float(logs["adv_accuracy"]), float(logs["clean_accuracy"])))
        recent = self._curve[-self.patience:]
        if len(recent) == self.patience and self._at_chance(v for pair in recent for v in pair):
            self._warn(epoch, recent)

    def _chance(self) -> float:
        return 1.0 / int(getattr(self.model, "classifier", self.model).output_shape[-1])

    def _at_chance(self, values) -> bool:
        """Two-sided: every value within ``tolerance`` of chance, above or below it."""
        return all(abs(v - self._chance()) <= self.tolerance for v in values)

    def _warn(self, epoch, recent):
        chance = self._chance()
        self.stalled_at = epoch
        eps = getattr(self.model, "train_eps", None)
        eps_text = f" (ε = {float(eps.numpy()):.3g})" if eps is not None else ""
        warnings.warn(
            f"adversarial training looks stalled: for {len(recent)} epochs the accuracy on the training batches "
            f"under its own attack{eps_text} and without it have stayed within {self.tolerance:.2f} of chance "
            f"({chance:.2f}): " + ", ".join(f"{adv:.2f} / {clean:.2f}" for adv, clean in recent) + " (attacked / "
            "clean). A fresh model trained only against a strong attack at the full ε can fail to leave chance for "
            "good, and the model returned then predicts one class. Remedies: ramp ε up (AdversarialModel("
            "eps_warmup=k) or training.EpsWarmup(k)), warm the learning rate up (schedules.warmup_cosine), lower the "
            "learning rate, or train on the double batch (mode='double').",
            StallWarning, stacklevel=_user_stacklevel())
        if self.stop:
            self.model.stop_training = True


def _user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that points at the first frame
    outside Keras, TensorFlow and ``helpers`` (the user's ``fit`` or ``adversarial_train`` call)."""
    inside = tuple(os.path.dirname(m.__file__) + os.sep for m in (keras, tf)) + (os.path.dirname(__file__) + os.sep,)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


#: The keywords of ``adversarial_train`` that build its ``AdversarialModel`` (the others go to ``fit``).
_WRAPPER_SETTINGS = frozenset(name for name, p in inspect.signature(AdversarialModel).parameters.items()
                             if p.kind is inspect.Parameter.KEYWORD_ONLY)


def adversarial_train(model: keras.Model, x, y=None, *, epochs: int, batch_size: int = 128, validation_data=None,
                      optimizer=None, learning_rate=None, jit_compile: bool = False, seed: int = 0,
                      early_stopping: int | None = None, **kwargs) -> keras.callbacks.History:
    """Train ``model`` in place with ``AdversarialModel`` + ``compile`` + ``fit``; return the Keras ``History``.

    ``model``: a classifier (logits out), wrapped here in ``AdversarialModel(model, **settings)``, where the settings
    are the keywords ``AdversarialModel`` takes (``attack``, ``eps``, ``mode``, ``attack_kwargs``,
    ``validation_attack(_kwargs)``, ``beta``, ``eps_warmup``; see there and ``make_attack``): e.g.
    ``adversarial_train(clf, x, y, attack="pgd", eps=0.3, mode="adversarial", epochs=10)``.  Or an
    ``AdversarialModel`` you built, which trains with its own settings (then pass none).  ``eps_warmup="auto"``
    ramps ε over a quarter of the epochs for PGD on adversarial examples only (``AdversarialModel.warmup_epochs``;
    0 turns it off; a ramp longer than ``epochs`` is refused).
    ``x`` is an image array with labels ``y`` (integer class indices, shape (N,)), or a ``tf.data.Dataset`` of
    ``(images, labels)`` batches (then ``y=None``); ``validation_data`` is ``(x_val, y_val)`` or such a Dataset.
    The optimizer: ``optimizer`` if given, else the one ``model`` was compiled with (training continues with its
    state), else Adam with ``learning_rate`` (a float or a Keras schedule; default 1e-3); ``jit_compile`` as in
    ``compile``.  ``seed`` seeds the shuffling and the attacks' random starts.
    ``early_stopping=k`` adds Keras' ``EarlyStopping`` on ``val_adv_accuracy`` (patience ``k``, best weights
    restored, only full-ε epochs considered; needs ``validation_data``); ``history.params["best_epoch"]`` is then the
    epoch whose weights are returned (the last one if no epoch could be considered).  ``epochs``, ``batch_size``
    (default 128), ``validation_data`` and every other keyword (``callbacks``, ``verbose`` — default 0 —,
    ``initial_epoch``, …) go to ``fit``.
    """
    settings = {name: kwargs.pop(name) for name in list(kwargs) if name in _WRAPPER_SETTINGS}
    adv = _wrap_checked(model, x, y, settings, epochs=epochs, batch_size=batch_size,
                        validation_data=validation_data, early_stopping=early_stopping)
    warmup = adv.warmup_epochs(epochs)  # fit adds the EpsWarmup; early stopping must skip its epochs
    with adv.distribute_strategy.scope():  # a new optimizer must live where the classifier's variables live
        adv.compile(optimizer=_choose_optimizer(model, optimizer, learning_rate), jit_compile=jit_compile)
    extra = []
    if early_stopping:
        extra.append(keras.callbacks.EarlyStopping("val_adv_accuracy", mode="max", patience=early_stopping,
                                                   restore_best_weights=True, start_from_epoch=max(0, warmup - 1)))
    streaming = isinstance(x, tf.data.Dataset)
    fit_kwargs = {"shuffle": not streaming, "validation_batch_size": VALIDATION_BATCH, "verbose": 0, **kwargs,
                  "callbacks": extra + list(kwargs.get("callbacks") or [])}
    keras.utils.set_random_seed(seed)
    try:
        history = adv.fit(x, y, batch_size=None if streaming else batch_size, epochs=epochs,
                          validation_data=validation_data, **fit_kwargs)
    except tf.errors.InvalidArgumentError as err:
        if _RANGE_MESSAGE in str(err):
            raise ValueError("the training data holds images outside [0, 1]; scale them to [0, 1] (e.g. divide "
                             "uint8 pixels by 255)") from None
        raise
    if not history.epoch or "loss" not in history.history:
        raise ValueError("the training data yielded no examples")
    if early_stopping:  # Keras' best_epoch stays 0 when no epoch was considered: the last one's weights stay then
        stop = extra[-1]
        history.params["best_epoch"] = stop.best_epoch if stop.best_weights is not None else history.epoch[-1]
    return history


def _choose_optimizer(model, optimizer, learning_rate):
    if optimizer is not None:
        if learning_rate is not None:
            raise ValueError("pass either optimizer= or learning_rate=, not both (the optimizer has its own rate)")
        return optimizer
    if isinstance(model, AdversarialModel) and getattr(model, "optimizer", None) is None:
        model = model.classifier  # a wrapper not compiled yet: continue with the classifier's optimizer, if any
    current = existing_optimizer(model, learning_rate, "pass optimizer=keras.optimizers.Adam(...) to train with a "
                                 "new optimizer, or leave learning_rate out to continue with the old one")
    return current if current is not None else keras.optimizers.Adam(1e-3 if learning_rate is None else learning_rate)


def _wrap_checked(model, x, y, settings, *, epochs, batch_size, validation_data, early_stopping):
    """Check ``adversarial_train``'s arguments (clear errors before any work); return the ``AdversarialModel``:
    ``model`` itself if it is one, else one built around the classifier ``model`` from ``settings``."""
    if isinstance(model, AdversarialModel):
        if settings:
            raise TypeError(f"model is already an AdversarialModel, which trains with its own settings; "
                            f"{sorted(settings)} cannot change them (build the AdversarialModel with them instead)")
        classifier = model.classifier
    elif not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model returning logits, got {type(model).__name__}")
    else:
        if "eps" not in settings:
            raise TypeError("adversarial_train needs eps=, the training attack's budget (or an AdversarialModel)")
        classifier = model
    _check_data(classifier, x, y, validation_data)
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if early_stopping is not None:
        check_positive_int(early_stopping, "early_stopping")
        if validation_data is None:
            raise ValueError("early_stopping monitors val_adv_accuracy and needs validation_data=(x_val, y_val)")
    return model if classifier is not model else AdversarialModel(model, **settings)


def _check_data(model, x, y, validation_data):
    """Fail early, with a clear message, on training or validation data that cannot feed the classifier ``model``."""
    num_classes = int(model.output_shape[-1])
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError("x is a tf.data.Dataset of (images, labels) batches, so y must be None")
        _check_dataset_spec(x, model)
    else:
        check_images(x)
        check_labels(y, len(x), num_classes=num_classes)
        if len(x) == 0:
            raise ValueError("the training data yielded no examples")
    if isinstance(validation_data, tf.data.Dataset):
        _check_dataset_spec(validation_data, model, "the validation")
    elif validation_data is not None:
        xv, yv = validation_data
        check_images(xv, "validation x")
        check_labels(yv, len(xv), "validation y", num_classes=num_classes)


def _check_dataset_spec(dataset, model, which="the"):
    """Fail early, with a clear message, on a ``tf.data.Dataset`` that cannot feed ``model`` (``which`` names it)."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"{which} tf.data.Dataset must yield (images, labels) batches, but yields {spec}")
    xs, ys = spec
    want = tuple(model.input_shape[1:])
    if xs.shape.rank != len(want) + 1 or not xs.shape[1:].is_compatible_with(want):
        raise ValueError(f"{which} dataset yields images of shape {xs.shape} but the model expects batches of "
                         f"{(None, *want)}; batch the dataset (dataset.batch(n)) and check the image size")
    if xs.dtype != tf.float32:
        raise TypeError(f"{which} dataset yields images of dtype {xs.dtype.name}; images must be float32 in [0, 1] "
                        "(e.g. dataset.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)))")
    if not ys.dtype.is_integer:
        raise TypeError(f"{which} dataset yields labels of dtype {ys.dtype.name} and shape {ys.shape}; labels must "
                        "be integer class indices, one per image")
    if ys.shape.rank not in (None, 1):
        raise ValueError(f"{which} dataset yields labels of shape {ys.shape}; labels must be integer class indices "
                         "of shape (N,), one per image (for (N, 1) labels: dataset.map(lambda x, y: (x, "
                         "tf.reshape(y, [-1]))))")


class IBPModel(WrapperModel):
    """Certified training with interval bound propagation (IBP; Gowal et al. 2019): train what can be *proved*.

    Wraps a classifier (logits out, layers ``helpers.certify`` can bound) and trains it in place on
    ``κ·CE(z, y) + (1 − κ)·CE(ẑ, y)``, where ``ẑ = certify.worst_case_logits(classifier, x, y, ε_t)`` are the
    worst-case margins the interval bounds allow in the ε_t-ball.  A fresh network cannot fit the worst case at a
    large ε, so after ``warmup_steps`` clean steps ε_t ramps linearly from 0 to ``eps_train`` (default ``eps``) and κ
    from 1 to ``kappa_end`` over ``ramp_steps`` optimiser steps, then both stay.  The History holds ``loss``,
    ``clean_accuracy`` and ``certified_accuracy`` (training batches, at ε_t) and, with validation data,
    ``val_clean_accuracy`` and ``val_certified_accuracy`` (at the full ``eps``).
    """

    def __init__(self, classifier, *, eps, ramp_steps: int, eps_train=None, warmup_steps: int = 0,
                 kappa_end: float = 0.5, **kwargs):
        from .certify import layer_chain

        layer_chain(classifier)  # refuse, with a clear message, a layer IBP cannot bound
        super().__init__(classifier, eps=eps, third=lambda: keras.metrics.Mean(name="certified_accuracy"),
                         **kwargs)
        self.eps_train = self.eps if eps_train is None else check_eps(eps_train, "eps_train")
        self.ramp_steps = check_positive_int(ramp_steps, "ramp_steps")
        self.warmup_steps = check_positive_int(warmup_steps, "warmup_steps", minimum=0)
        if not 0.0 <= kappa_end <= 1.0:
            raise ValueError(f"kappa_end={kappa_end!r} must be a weight in [0, 1]")
        self.kappa_end = float(kappa_end)

    def schedule(self, step):
        """``(ε_t, κ_t)`` at optimiser step ``step`` (TF code)."""
        t = (tf.cast(step, tf.float32) - self.warmup_steps) / float(self.ramp_steps)
        t = tf.clip_by_value(t, 0.0, 1.0)
        return self.eps_train * t, 1.0 - (1.0 - self.kappa_end) * t

    def train_step(self, data):
        from .certify import worst_case_logits

        x, y = self.unpack(data)
        eps, kappa = self.schedule(self.optimizer.iterations)
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            z_hat = worst_case_logits(self.classifier, x, y, eps)  # upper bounds of z_j - z_y; 0 at j = y
            loss = (kappa * self.compute_loss(y=y, y_pred=logits)
                    + (1.0 - kappa) * self.compute_loss(y=y, y_pred=z_hat))
            scaled = self.optimizer.scale_loss(loss)
        self.minimise(tape, scaled)
        return self._update_metrics(loss, y, logits, z_hat)

    def test_step(self, data):
        from .certify import worst_case_logits

        x, y = self.unpack(data)
        logits = self(x, training=False)
        z_hat = worst_case_logits(self.classifier, x, y, self.eps)
        return self._update_metrics(self.compute_loss(y=y, y_pred=z_hat), y, logits, z_hat)

    def _update_metrics(self, loss, y, logits, z_hat):
        is_label = tf.one_hot(y, tf.shape(z_hat)[-1]) > 0.5  # z_hat is 0 there; every other bound must be < 0
        proved = tf.reduce_all(tf.logical_or(is_label, z_hat < 0.0), axis=-1)
        self.third_metric.update_state(tf.cast(proved, tf.float32))  # certified_accuracy
        return self.report(loss, y, logits)
