"""Adversarial training: make adversarial examples from the *current* model inside every training step.

Madry et al. (2018) frame robust training as a saddle-point problem: the inner attack maximises the loss around
each training example, the outer optimiser minimises the loss at those worst-case points.  Each step therefore
(1) attacks the batch with the model as it is now, (2) stops the gradient through the attack (the weights are
trained on the adversarial *points*, not through the attack's computation), (3) takes an optimiser step on the
clean + adversarial batch (``mode="double"``, Goodfellow et al. 2015) or the adversarial batch alone
(``mode="adversarial"``, Madry et al. 2018).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import attacks
from ._checks import check_choice, check_eps, check_images, check_labels, check_positive_int
from .models import build_model, compile_model, load_or_train, op_determinism_enabled

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

MODES = ("double", "adversarial")
_RANGE_MESSAGE = "images must lie in [0, 1]"  # the in-graph check of streamed batches, turned into a ValueError
ATTACKS = ("fgsm", "fgsm_rs", "pgd")


@dataclass
class TrainingHistory:
    """Per-epoch figures, shaped like ``keras.callbacks.History`` (``history.history["loss"]`` etc.).

    ``loss``: mean training loss; ``clean_accuracy`` / ``adv_accuracy``: accuracy on the clean and the adversarial
    training batches as they were seen during the epoch (running averages); ``val_*`` the same at the end of the
    epoch on ``validation_data`` (with the training attack); ``time``: seconds per epoch.
    """

    history: dict = field(default_factory=dict)
    epoch: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def append(self, epoch: int, **values) -> None:
        self.epoch.append(epoch)
        for k, v in values.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]


def _make_attack(attack, eps, attack_kwargs):
    """Return TF code ``fn(model, x, y) -> x_adv`` for the configured attack (traced inside the train step)."""
    kwargs = dict(attack_kwargs or {})
    if callable(attack):
        return lambda model, x, y: attack(model, x, y, eps, **kwargs)
    check_choice("attack", attack, ATTACKS)
    if attack == "fgsm":
        bad = set(kwargs) - {"targeted"}
        if bad:
            raise ValueError(f"attack_kwargs {sorted(bad)} are not accepted by fgsm; allowed: ['targeted']")
        return lambda model, x, y: attacks.fgsm(model, x, y, eps, **kwargs)
    if attack == "fgsm_rs":
        # FGSM from a random start with step 1.25·ε (Wong, Rice & Kolter 2020, "Fast is better than free"): one
        # PGD step from a uniform random point of the ε-ball, projected back.  It resists the catastrophic
        # overfitting of plain FGSM training at the cost of plain FGSM.
        bad = set(kwargs) - {"step_size"}
        if bad:
            raise ValueError(f"attack_kwargs {sorted(bad)} are not accepted by fgsm_rs; allowed: ['step_size']")
        step = kwargs.get("step_size")  # default read at trace time, so it follows a warming-up ε
        return lambda model, x, y: attacks.pgd(model, x, y, eps, steps=1, random_start=True,
                                               step_size=1.25 * eps if step is None else step)
    bad = set(kwargs) - {"steps", "step_size", "norm", "random_start"}
    if bad:
        raise ValueError(f"attack_kwargs {sorted(bad)} are not accepted for training with pgd; allowed: "
                         "['norm', 'random_start', 'step_size', 'steps']")
    kwargs.setdefault("steps", 7)
    return lambda model, x, y: attacks.pgd(model, x, y, eps, **kwargs)


def adversarial_train(model: keras.Model, x, y, *, attack="pgd", eps, epochs: int, batch_size: int = 128,
                      mode: str = "double", attack_kwargs: dict | None = None, seed: int = 0,
                      learning_rate=1e-3, validation_data=None, progress: bool = False, eps_warmup: int = 0,
                      early_stopping: int | None = None, validation_attack=None,
                      validation_attack_kwargs: dict | None = None, jit_compile: bool = False) -> TrainingHistory:
    """Train ``model`` in place on adversarial examples generated at every step; return a ``TrainingHistory``.

    Args:
        attack: ``"fgsm"``, ``"fgsm_rs"`` (FGSM from a random start, step 1.25·ε; Wong et al. 2020), ``"pgd"``
            (default 7 steps, step 2.5·ε/7, random start) or a callable
            ``(model, x, y, eps) -> x_adv`` written in TensorFlow ops (it is traced into the training step).
        eps: the attack budget in pixel units of [0, 1] (L∞ unless ``attack_kwargs={"norm": "l2"}``).
        mode: ``"double"`` trains on clean + adversarial batches (twice the batch), ``"adversarial"`` on
            adversarial examples only.
        attack_kwargs: extra keyword arguments for the attack (``steps``, ``step_size``, ``norm``, ...).
        learning_rate: float or a ``keras.optimizers.schedules`` schedule (used if the model is not compiled).
        validation_data: optional ``(x_val, y_val)`` evaluated clean and under the training attack each epoch.
        progress: print one line per epoch.
        eps_warmup: ramp ε linearly over this many epochs (ε·1/n, ε·2/n, …, then ε), so training at a large ε
            does not start from an attack the fresh model cannot fit; 0 (default) trains at ε from the start.
        early_stopping: stop when ``val_adv_accuracy`` has not improved for this many epochs and restore the
            weights of the best epoch (needs ``validation_data``).
        validation_attack, validation_attack_kwargs: the attack of the end-of-epoch check (same forms as
            ``attack``; default: the training attack).  A multi-step check (``"pgd"``) while training with FGSM
            detects catastrophic overfitting — PGD accuracy collapsing while FGSM accuracy stays high — and with
            ``early_stopping`` restores the weights from before the collapse.
        jit_compile: compile the training step with XLA (off by default: on a CPU it saves little and costs a
            long first compile; on a GPU it often pays).

    ``x`` may also be a ``tf.data.Dataset`` of ``(images, labels)`` *batches* (then ``y`` must be ``None`` and
    ``batch_size`` is the dataset's): data that does not fit in memory, e.g. full CIFAR-10, streams through it.
    Distributed training: build the model and call this function inside the same
    ``tf.distribute.Strategy.scope()`` (e.g. ``MirroredStrategy`` over several GPUs); each batch is then split
    across the replicas, the gradients are summed and every replica attacks its share of the batch.
    Mixed precision: build the model with ``models.build_model(..., mixed_precision=True)``; the loss is then
    scaled automatically (Keras' ``LossScaleOptimizer``).  Both pay on GPUs, not on this course's CPUs.
    """
    streaming = isinstance(x, tf.data.Dataset)
    if streaming:
        if y is not None:
            raise ValueError("x is a tf.data.Dataset of (images, labels) batches, so y must be None")
        _check_dataset_spec(x, model)
    else:
        check_images(x)
        check_labels(y, len(x))
    eps = check_eps(eps)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    check_choice("mode", mode, MODES)
    if not (callable(attack) or isinstance(attack, str)):
        raise TypeError(f"attack must be 'fgsm', 'fgsm_rs', 'pgd' or a callable (model, x, y, eps) -> x_adv, "
                        f"got {attack!r}")
    check_positive_int(eps_warmup, "eps_warmup", minimum=0)
    if early_stopping is not None:
        check_positive_int(early_stopping, "early_stopping")
        if validation_data is None:
            raise ValueError("early_stopping monitors val_adv_accuracy and needs validation_data=(x_val, y_val)")
    if jit_compile and op_determinism_enabled():
        raise ValueError("jit_compile=True cannot run while TensorFlow's op determinism is on (XLA has no "
                         "deterministic max-pool gradient); call models.seed_everything(seed, "
                         "deterministic=False) first, or train without jit_compile")
    # With a warm-up, ε is a variable so it can change between epochs without retracing the compiled step.
    # Without one it stays a constant: the traced graph (and so the op seeds of PGD's random starts) is then
    # exactly the one the cached course models were trained with.
    eps_var = tf.Variable(eps, dtype=tf.float32, trainable=False, name="attack_eps") if eps_warmup else None
    attack_eps = eps_var if eps_warmup else eps
    attack_fn = _make_attack(attack, attack_eps, attack_kwargs)
    if validation_attack is None:
        val_attack_fn = attack_fn
    elif callable(validation_attack) or isinstance(validation_attack, str):
        val_attack_fn = _make_attack(validation_attack, attack_eps, validation_attack_kwargs)
    else:
        raise TypeError(f"validation_attack must be 'fgsm', 'fgsm_rs', 'pgd', a callable or None, "
                        f"got {validation_attack!r}")
    if validation_data is not None:
        xv, yv = validation_data
        check_images(xv, "validation x")
        check_labels(yv, len(xv), "validation y")

    keras.utils.set_random_seed(seed)
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        compile_model(model, learning_rate=learning_rate)
    optimizer = model.optimizer
    if not optimizer.built:
        # Create the optimizer's slots now: creating variables during the first trace would trace the step twice.
        optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x_spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    y_spec = tf.TensorSpec((None,), tf.int64)
    strategy = tf.distribute.get_strategy()
    distributed = streaming or tf.distribute.has_strategy()
    jit = True if jit_compile else None

    def batch_correct(logits, xb, yb, n):
        """Correct predictions on the clean and the adversarial part of a training step (TF code)."""
        if mode == "double":
            clean_logits, adv_logits = logits[:n], logits[n:]
        else:
            adv_logits = logits
            clean_logits = model(xb, training=False)

        def correct(lg):
            return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(lg, -1, output_type=tf.int64), yb), tf.float32))
        return correct(clean_logits), correct(adv_logits)

    @tf.function(input_signature=[x_spec, y_spec], jit_compile=jit)
    def train_step(xb, yb):
        # The attack sees the model as it is now; stop_gradient: we train on the adversarial points,
        # not through the computation that produced them.
        x_adv = tf.stop_gradient(attack_fn(model, xb, yb))
        n = tf.shape(xb)[0]
        if mode == "double":
            x_in, y_in = tf.concat([xb, x_adv], 0), tf.concat([yb, yb], 0)
        else:
            x_in, y_in = x_adv, yb
        with tf.GradientTape() as tape:
            logits = model(x_in, training=True)
            loss = loss_fn(y_in, logits)
            scaled = optimizer.scale_loss(loss)  # the loss itself unless mixed precision scales it
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (loss, *batch_correct(logits, xb, yb, n))

    def replica_step(xb, yb):
        # One replica's share of a (possibly distributed) batch.  The loss is summed here and divided by the
        # *global* batch size, so that the optimizer's sum of the replicas' gradients is the gradient of the mean.
        xb = tf.ensure_shape(tf.cast(xb, tf.float32), x_spec.shape)
        yb = tf.cast(tf.reshape(yb, [-1]), tf.int64)
        checks = [tf.debugging.assert_greater_equal(xb, 0.0, message=_RANGE_MESSAGE),
                  tf.debugging.assert_less_equal(xb, 1.0, message=_RANGE_MESSAGE)]
        with tf.control_dependencies(checks):
            xb = tf.identity(xb)
        n = tf.shape(xb)[0]
        global_n = tf.distribute.get_replica_context().all_reduce("sum", tf.cast(n, tf.float32))
        x_adv = tf.stop_gradient(attack_fn(model, xb, yb))
        x_in = tf.concat([xb, x_adv], 0) if mode == "double" else x_adv
        y_in = tf.concat([yb, yb], 0) if mode == "double" else yb
        per_batch = 2.0 * global_n if mode == "double" else global_n
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x_in, training=True), tf.float32)
            loss_sum = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                y_in, logits, from_logits=True))
            scaled = optimizer.scale_loss(loss_sum / per_batch)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (loss_sum * (global_n / per_batch), tf.cast(n, tf.float32), *batch_correct(logits, xb, yb, n))

    def distributed_step(batch):
        values = strategy.run(replica_step, args=batch)
        return [strategy.reduce("sum", v, axis=None) for v in values]

    def batches(epoch_order):
        """The epoch's batches for the distributed/streaming path."""
        if streaming:
            return strategy.experimental_distribute_dataset(x)
        d = tf.data.Dataset.from_tensor_slices((x[epoch_order], y[epoch_order])).batch(batch_size)
        return strategy.experimental_distribute_dataset(d)

    compiled_distributed_step = None

    @tf.function(input_signature=[x_spec, y_spec])
    def eval_step(xb, yb):
        x_adv = val_attack_fn(model, xb, yb)
        def correct(xx):
            pred = tf.argmax(model(xx, training=False), -1, output_type=tf.int64)
            return tf.reduce_sum(tf.cast(tf.equal(pred, yb), tf.float32))
        return correct(xb), correct(x_adv)

    if not streaming:
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.int64)
    rng = np.random.default_rng(seed)
    history = TrainingHistory(params=dict(attack=attack if isinstance(attack, str) else getattr(
        attack, "__name__", "callable"), eps=eps, epochs=epochs, batch_size=batch_size, mode=mode,
        attack_kwargs=dict(attack_kwargs or {}), seed=seed))
    best = (-1.0, None, -1)  # (val_adv_accuracy, weights, epoch)
    for epoch in range(epochs):
        if eps_warmup:
            eps_var.assign(eps * min(1.0, (epoch + 1) / eps_warmup))
        start = time.perf_counter()
        order = None if streaming else rng.permutation(len(x))
        tot_loss = tot_clean = tot_adv = 0.0
        if distributed:
            seen = 0.0
            dist_batches = batches(order)
            if compiled_distributed_step is None:
                compiled_distributed_step = tf.function(distributed_step, input_signature=[dist_batches.element_spec],
                                                        jit_compile=jit)
            for batch in dist_batches:
                try:
                    loss, n_b, c_clean, c_adv = compiled_distributed_step(batch)
                except tf.errors.InvalidArgumentError as err:
                    if _RANGE_MESSAGE in str(err):
                        raise ValueError("the training data holds images outside [0, 1]; scale them to [0, 1] "
                                         "(e.g. divide uint8 pixels by 255)") from None
                    raise
                tot_loss += float(loss)
                seen += float(n_b)
                tot_clean += float(c_clean)
                tot_adv += float(c_adv)
            if seen == 0:
                raise ValueError("the training data yielded no examples")
        else:
            seen = len(x)
            for i in range(0, len(x), batch_size):
                idx = order[i:i + batch_size]
                loss, c_clean, c_adv = train_step(tf.constant(x[idx]), tf.constant(y[idx]))
                tot_loss += float(loss) * len(idx)
                tot_clean += float(c_clean)
                tot_adv += float(c_adv)
        values = dict(loss=tot_loss / seen, clean_accuracy=tot_clean / seen, adv_accuracy=tot_adv / seen)
        if validation_data is not None:
            vc = va = 0.0
            for i in range(0, len(xv), attacks.EVAL_BATCH):
                c, a = eval_step(tf.constant(np.asarray(xv[i:i + attacks.EVAL_BATCH], np.float32)),
                                 tf.constant(np.asarray(yv[i:i + attacks.EVAL_BATCH], np.int64)))
                vc += float(c)
                va += float(a)
            values.update(val_clean_accuracy=vc / len(xv), val_adv_accuracy=va / len(xv))
        values["time"] = time.perf_counter() - start
        values["eps"] = float(eps_var.numpy()) if eps_warmup else eps
        history.append(epoch, **values)
        if progress:
            extra = "".join(f"  {k} {values[k]:.3f}" for k in ("val_clean_accuracy", "val_adv_accuracy") if k in values)
            print(f"epoch {epoch + 1}/{epochs}  loss {values['loss']:.3f}  clean acc {values['clean_accuracy']:.3f}"
                  f"  adv acc {values['adv_accuracy']:.3f}{extra}  ({values['time']:.1f} s)", flush=True)
        if early_stopping is not None:
            if values["val_adv_accuracy"] > best[0]:
                best = (values["val_adv_accuracy"], model.get_weights(), epoch)
            elif epoch - best[2] >= early_stopping:
                if progress:
                    print(f"early stopping: no gain for {early_stopping} epochs; restoring epoch {best[2] + 1}")
                break
    if early_stopping is not None and best[1] is not None:
        model.set_weights(best[1])
        history.params["best_epoch"] = best[2]
    return history


def _check_dataset_spec(dataset, model):
    """Fail early, with a clear message, on a ``tf.data.Dataset`` that cannot feed ``model``."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"the tf.data.Dataset must yield (images, labels) batches, but yields {spec}")
    xs, ys = spec
    want = tuple(model.input_shape[1:])
    if xs.shape.rank != len(want) + 1 or not xs.shape[1:].is_compatible_with(want):
        raise ValueError(f"the dataset yields images of shape {xs.shape} but the model expects batches of "
                         f"{(None, *want)}; batch the dataset (dataset.batch(n)) and check the image size")
    if xs.dtype != tf.float32:
        raise TypeError(f"the dataset yields images of dtype {xs.dtype.name}; images must be float32 in [0, 1] "
                        "(e.g. dataset.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)))")
    if not ys.dtype.is_integer or ys.shape.rank not in (1, 2):
        raise TypeError(f"the dataset yields labels of dtype {ys.dtype.name} and shape {ys.shape}; labels must "
                        "be integer class indices, one per image")


#: Test images evaluated (clean and under the training attack) after every epoch by ``adversarial_model``.
VALIDATION_SIZE = 500


def adversarial_model(ds, *, attack="pgd", eps, epochs: int, batch_size: int = 64, mode: str = "adversarial",
                      attack_kwargs: dict | None = None, arch: str = "cnn", seed: int = 0, learning_rate=1e-3,
                      directory=None, retrain: bool = False, validation_size: int = VALIDATION_SIZE,
                      **train_kwargs):
    """An adversarially trained classifier for dataset ``ds``, trained with ``adversarial_train`` or from cache.

    Returns ``(model, history)`` where ``history`` is the ``TrainingHistory.history`` dict of the run that trained
    it (validation figures on the first ``validation_size`` test images: attacking them every epoch is not free).
    ``train_kwargs`` go to ``adversarial_train`` (``eps_warmup``, ``early_stopping``, ``validation_attack``,
    ``validation_attack_kwargs``).  The cache key holds every argument that changes the weights or the history.
    ``attack`` must be a name here (``"fgsm"``, ``"fgsm_rs"`` or ``"pgd"``): a callable has no stable identity to
    cache under.
    """
    check_choice("attack", attack, ATTACKS)
    eps = check_eps(eps)
    allowed = {"eps_warmup", "early_stopping", "validation_attack", "validation_attack_kwargs"}
    if set(train_kwargs) - allowed:
        raise TypeError(f"adversarial_model got unexpected arguments {sorted(set(train_kwargs) - allowed)}; "
                        f"allowed besides its own: {sorted(allowed)}")
    if callable(train_kwargs.get("validation_attack")):
        raise TypeError("validation_attack must be a name here ('fgsm', 'fgsm_rs' or 'pgd'), not a callable")
    key = dict(dataset=ds.name, data=ds.fingerprint(), arch=arch, recipe=f"adv-{attack}-{mode}", epochs=epochs,
               eps=eps, batch_size=batch_size, attack_kwargs=attack_kwargs or {}, seed=seed,
               learning_rate=keras.optimizers.schedules.serialize(learning_rate)
               if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) else learning_rate,
               validation=validation_size, keras=keras.__version__)
    key.update({k: v for k, v in train_kwargs.items() if v is not None})  # old keys stay valid without extras

    def train():
        keras.utils.set_random_seed(seed)
        model = build_model(ds.input_shape, ds.num_classes, arch=arch, seed=seed)
        h = adversarial_train(model, ds.x_train, ds.y_train, attack=attack, eps=eps, epochs=epochs,
                              batch_size=batch_size, mode=mode, attack_kwargs=attack_kwargs, seed=seed,
                              learning_rate=learning_rate,
                              validation_data=(ds.x_test[:validation_size], ds.y_test[:validation_size]),
                              **train_kwargs)
        return model, dict(h.history, **({"best_epoch": [h.params["best_epoch"]]} if "best_epoch" in h.params
                                         else {}))

    model, history, _ = load_or_train(key, train, directory=directory, retrain=retrain)
    return model, history


#: The models the lessons share (notebooks 01, 05 and 06 train or reload exactly these, so the cache is shared).
COURSE_MODELS = ("standard", "transfer", "fgsm", "pgd", "robust")


def course_model(ds, kind: str = "standard", *, eps: float | None = None, seed: int = 0, directory=None):
    """``(model, history)`` for one of the course's shared recipes, trained on first use, then from cache.

    - ``"standard"``: the CNN, 10 epochs of ordinary training (notebook 01);
    - ``"transfer"``: the same recipe with another seed, a stand-in for "someone else's model" (transfer attacks);
    - ``"fgsm"``: FGSM adversarial training, double batch (clean + adversarial), 10 epochs, batch 64;
    - ``"pgd"``: PGD-7 adversarial training on adversarial examples only (Madry et al.), 20 epochs, batch 64,
      learning rate warmed up to 2e-3 then decayed (``warmup_cosine``);
    - ``"robust"``: the ``"pgd"`` recipe for 40 epochs (the schedule stretched to match): the project's most
      robust model (notebook 07, ``benchmarks/robustness_report.py``), trained in 109 s on 2 CPU cores.
    ``eps`` (for the adversarial recipes) defaults to the dataset's standard budget.
    """
    from .data import standard_eps

    check_choice("kind", kind, COURSE_MODELS)
    if kind in ("standard", "transfer"):
        from .models import standard_model

        return standard_model(ds, epochs=10, seed=seed + (1 if kind == "transfer" else 0), directory=directory)
    eps = standard_eps(ds.name) if eps is None else check_eps(eps)
    if kind == "fgsm":
        return adversarial_model(ds, attack="fgsm", eps=eps, epochs=10, batch_size=64, mode="double", seed=seed,
                                 directory=directory)
    # A warm-up to a peak learning rate of 2e-3, then cosine decay: measured on mnist_5k, it lifts PGD-40
    # accuracy at ε = 0.3 from 0.75 (constant 1e-3) to 0.85 in the same 20 epochs (benchmarks/bench_quality.py).
    epochs = 40 if kind == "robust" else 20
    schedule = warmup_cosine(2e-3, steps=epochs * -(-len(ds.x_train) // 64))
    return adversarial_model(ds, attack="pgd", eps=eps, epochs=epochs, batch_size=64, mode="adversarial",
                             attack_kwargs={"steps": 7}, seed=seed, learning_rate=schedule, directory=directory)


@keras.saving.register_keras_serializable(package="course")
class Cyclic(keras.optimizers.schedules.LearningRateSchedule):
    """One triangular learning-rate cycle: linear from 0 up to ``peak`` at ``peak_at`` of ``steps``, then linear
    back down to 0 at ``steps`` (and 0 after).  The "one cycle" schedule of Wong, Rice & Kolter (2020), which lets
    FGSM training converge in few epochs."""

    def __init__(self, peak: float, steps: int, peak_at: float = 0.4):
        self.peak, self.steps, self.peak_at = float(peak), int(steps), float(peak_at)

    def __call__(self, step):
        t = tf.cast(step, tf.float32) / float(self.steps)
        up = t / self.peak_at
        down = (1.0 - t) / (1.0 - self.peak_at)
        return self.peak * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return dict(peak=self.peak, steps=self.steps, peak_at=self.peak_at)


def cyclic(peak: float, steps: int, *, peak_at: float = 0.4) -> Cyclic:
    """Triangular one-cycle schedule over ``steps`` optimiser steps (see ``Cyclic``), for ``learning_rate=``."""
    check_eps(peak, "peak")
    steps = check_positive_int(steps, "steps")
    if not 0.0 < peak_at < 1.0:
        raise ValueError(f"peak_at={peak_at!r} must be a fraction in (0, 1)")
    return Cyclic(peak, steps, peak_at)


def piecewise(values, boundaries):
    """Piecewise-constant learning rate: ``values[i]`` until optimiser step ``boundaries[i]`` (Keras'
    ``PiecewiseConstantDecay``; ``len(values) == len(boundaries) + 1``), e.g. ``piecewise([1e-3, 1e-4], [1000])``.
    """
    values = [float(check_eps(v, "learning rate")) for v in values]
    boundaries = [int(b) for b in boundaries]
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"piecewise needs one more value than boundaries, got {len(values)} values and "
                         f"{len(boundaries)} boundaries")
    if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or (boundaries and boundaries[0] < 0):
        raise ValueError(f"boundaries must be increasing non-negative step numbers, got {boundaries}")
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def warmup_cosine(peak: float, steps: int, *, warmup: float = 0.2):
    """Learning-rate schedule: linear warm-up from 0 to ``peak`` over the first ``warmup`` fraction of ``steps``
    optimiser steps, then cosine decay to 0 (Keras' ``CosineDecay`` with ``warmup_target``).

    Robust training at a large ε starts slowly (the adversarial loss is flat and high at first); a gentle start
    avoids the collapse to chance that a high constant rate can cause, and the decay settles the weights.
    """
    check_eps(peak, "peak")
    steps = check_positive_int(steps, "steps")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup={warmup!r} must be a fraction in [0, 1)")
    n_warm = int(warmup * steps)
    return keras.optimizers.schedules.CosineDecay(0.0, steps - n_warm, warmup_target=peak, warmup_steps=n_warm)
