"""Small classification datasets for demos and probes: scikit-learn's bundled digits and wine, and CIFAR-10
from a local folder.

Every loader returns a :class:`Split`: float32 features standardized with the training set's statistics,
int64 labels, and a stratified train/test split drawn from a fixed seed (``numpy.random.RandomState``,
whose stream numpy keeps stable across versions), so the same seed gives the same split everywhere.

* :func:`load_digits`: 1797 8x8 images of digits (64 features, 10 classes), bundled with scikit-learn.
* :func:`load_wine`: 178 wines (13 features, 3 classes), bundled with scikit-learn.
* :func:`load_cifar10`: the python version of CIFAR-10 (``data_batch_1`` .. ``data_batch_5``, ``test_batch``)
  from a local folder; nothing is downloaded. Those files are pickles: they are read by a restricted
  unpickler that builds only dicts, lists, strings, bytes, numbers and numpy uint8 arrays, and refuses
  any other global (so a crafted file cannot run code).

Example:
    >>> d = load_digits(seed=0)
    >>> d.x_train.shape, d.n_classes
    (torch.Size([1347, 64]), 10)
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MissingDependency

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_FEATURES = 3 * 32 * 32
DATASETS = ("digits", "wine", "cifar10")


@dataclass
class Split:
    """A train/test split: ``x_*`` float32 ``[n, features]``, ``y_*`` int64 ``[n]``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        """The split in words, for reports: ``digits: 1,437 training and 360 test samples, 64 features, 10 classes``."""
        return (f"{self.name}: {len(self.y_train):,} training and {len(self.y_test):,} test samples, "
                f"{self.n_features} features, {self.n_classes} classes")

    def __repr__(self) -> str:
        return (f"Split({self.name}: {len(self.y_train)} train / {len(self.y_test)} test, {self.n_features} features, "
                f"{self.n_classes} classes)")


def standardize(train: np.ndarray, test: np.ndarray, axis=0) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / std`` with the training set's mean and std along ``axis`` (std 0 -> 1: constant
    features become 0 instead of NaN)."""
    mean = train.mean(axis=axis, keepdims=True)
    std = train.std(axis=axis, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: in every class, ``round(test_fraction * n_class)`` samples go to test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    rs = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rs.permutation(len(idx))]
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Split:
    tr, te = stratified_split(y, test_fraction, seed)
    xtr, xte = standardize(x[tr].astype(np.float64), x[te].astype(np.float64))
    return Split(name, torch.from_numpy(xtr.astype(np.float32)), torch.from_numpy(y[tr].astype(np.int64)),
                 torch.from_numpy(xte.astype(np.float32)), torch.from_numpy(y[te].astype(np.int64)),
                 int(y.max()) + 1)


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of scikit-learn's bundled ``digits`` or ``wine``.

    Read straight from the CSV files that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``,
    ``wine_data.csv``: what ``load_digits`` / ``load_wine`` parse) without importing scikit-learn, which
    pulls in scipy and takes seconds; falls back to the scikit-learn functions if the files moved.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise MissingDependency("the bundled datasets need scikit-learn: pip install 'depthinit[data]' "
                                "(or scikit-learn)")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    try:
        if name == "digits":
            arr = np.loadtxt(os.path.join(folder, "digits.csv.gz"), delimiter=",")
            return arr[:, :-1], arr[:, -1].astype(np.int64)
        arr = np.loadtxt(os.path.join(folder, "wine_data.csv"), delimiter=",", skiprows=1)
        return arr[:, :-1], arr[:, -1].astype(np.int64)
    except OSError:
        from sklearn import datasets

        b = getattr(datasets, f"load_{name}")()
        return b.data, b.target


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's bundled handwritten digits (1797 samples, 64 features, 10 classes), standardized.

    Example:
        >>> d = load_digits(); len(d.y_train), len(d.y_test)
        (1347, 450)
    """
    return _from_arrays("digits", *_bundled("digits"), test_fraction, seed)


def load_wine(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's bundled wine recognition data (178 samples, 13 features, 3 classes), standardized."""
    return _from_arrays("wine", *_bundled("wine"), test_fraction, seed)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def _latin1_encode(text, encoding="latin1"):
    """What Python 3 writes for ``bytes`` in a protocol-2 pickle: ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed in a CIFAR batch")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's own _reconstruct, whatever module holds it
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy._core.numeric._frombuffer under protocol 5
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin containers, strings, bytes, numbers and numpy arrays; any other global in the
    stream (``os.system``, ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError` before it is
    looked up, so nothing in the file can run code. Python 2 strings load as bytes (``encoding="bytes"``)."""

    _ALLOWED = _numpy_globals()

    def __init__(self, file, **kw):
        super().__init__(file, encoding="bytes", **kw)

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a CIFAR batch file") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a CIFAR batch file")


def _key(d: dict, name: str):
    for k in (name, name.encode()):
        if k in d:
            return d[k]
    raise ValueError(f"no {name!r} entry")


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> ``(data uint8 [n, 3072], labels int64 [n])``, checked.

    Raises:
        ValueError: the file is not a CIFAR-10 batch (wrong structure, shapes, dtype or labels), with the
            path and the reason; ``pickle.UnpicklingError`` is re-raised as ValueError too.
    """
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f).load()
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed stream (pickle raises many types) is "not a batch"
        raise ValueError(f"{path}: not a readable CIFAR-10 batch: {type(e).__name__}: {e}") from None
    try:
        if not isinstance(obj, dict):
            raise ValueError(f"expected a dict, got {type(obj).__name__}")
        data, labels = _key(obj, "data"), _key(obj, "labels")
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == CIFAR_FEATURES):
            raise ValueError(f"'data' must be a uint8 array [n, {CIFAR_FEATURES}], got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
        if not (isinstance(labels, (list, np.ndarray)) and all(isinstance(v, (int, np.integer)) for v in labels)):
            raise ValueError("'labels' must be a list of ints")
        lab = np.asarray(labels, dtype=np.int64)
        if lab.shape != (data.shape[0],):
            raise ValueError(f"{len(lab)} labels for {data.shape[0]} images")
        if lab.size and (lab.min() < 0 or lab.max() > 9):
            raise ValueError("labels must be in 0..9")
    except ValueError as e:
        raise ValueError(f"{path}: not a CIFAR-10 batch: {e}") from None
    return data, lab


def _cifar_dir(root: str | os.PathLike) -> str:
    root = os.fspath(root)
    for d in (root, os.path.join(root, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(d, CIFAR_TEST)):
            return d
    raise FileNotFoundError(
        f"no CIFAR-10 python batches in {root!r} (expected {', '.join(CIFAR_TRAIN)}, {CIFAR_TEST}, or a "
        "cifar-10-batches-py folder holding them); depthinit downloads nothing: fetch cifar-10-python.tar.gz "
        "from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there"
    )


def load_cifar10(root: str | os.PathLike, n_train: int | None = None, n_test: int | None = None) -> Split:
    """CIFAR-10 from a local folder of python batches, flattened to ``[n, 3072]`` and standardized per
    channel with the training set's mean and std.

    Args:
        root: the folder holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (or the extracted
            ``cifar-10-batches-py`` folder inside it). Missing training batches are skipped; at least one
            is needed.
        n_train, n_test: keep only the first n samples (for quick runs).
    """
    d = _cifar_dir(root)
    parts = [read_cifar_batch(os.path.join(d, f)) for f in CIFAR_TRAIN if os.path.isfile(os.path.join(d, f))]
    if not parts:
        raise FileNotFoundError(f"no CIFAR-10 training batch ({CIFAR_TRAIN[0]} ...) in {d!r}")
    xtr = np.concatenate([p[0] for p in parts])[:n_train]
    ytr = np.concatenate([p[1] for p in parts])[:n_train]
    xte, yte = read_cifar_batch(os.path.join(d, CIFAR_TEST))
    xte, yte = xte[:n_test], yte[:n_test]
    shape = (-1, 3, 32 * 32)  # rows are [R(1024) G(1024) B(1024)]: standardize per channel
    a, b = standardize(xtr.reshape(shape).astype(np.float32) / 255, xte.reshape(shape).astype(np.float32) / 255,
                       axis=(0, 2))
    return Split("cifar10", torch.from_numpy(a.reshape(len(a), -1).astype(np.float32)), torch.from_numpy(ytr),
                 torch.from_numpy(b.reshape(len(b), -1).astype(np.float32)), torch.from_numpy(yte), 10)


def load(name: str, *, seed: int = 0, root: str | None = None, n_train: int | None = None,
         n_test: int | None = None) -> Split:
    """Load a dataset by name: ``digits``, ``wine`` (bundled) or ``cifar10`` (needs ``root``)."""
    if name == "digits":
        return load_digits(seed=seed)
    if name == "wine":
        return load_wine(seed=seed)
    if name == "cifar10":
        if not root:
            raise ValueError("cifar10 needs a local folder of python batches: pass root= (--data-root)")
        return load_cifar10(root, n_train, n_test)
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
