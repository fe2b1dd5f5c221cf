"""Bundled datasets (digits, wine) and the CIFAR-10 loader with its restricted unpickler."""

import os
import pickle

import numpy as np
import pytest
import torch

from depthinit.applications import data as D


def test_digits_split_standardized_and_fixed():
    d = D.load_digits(seed=0)
    assert (d.x_train.shape, d.x_test.shape, d.n_classes) == ((1347, 64), (450, 64), 10)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    # standardized with the training statistics: mean 0, std 1 per non-constant feature (float32 rounding
    # of values ~1: 1e-5); constant pixels (always 0 in digits) become 0, not NaN
    mean, std = d.x_train.double().mean(0), d.x_train.double().std(0, unbiased=False)
    const = std < 1e-6
    assert const.any() and torch.all(d.x_train[:, const] == 0)
    assert torch.allclose(mean, torch.zeros(64, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std[~const], torch.ones(int((~const).sum()), dtype=torch.float64), atol=1e-5)
    assert torch.isfinite(d.x_test).all()
    # same seed, same split; another seed, another split; stratified: every class ~25% in test
    again = D.load_digits(seed=0)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    assert not torch.equal(D.load_digits(seed=1).y_test, d.y_test)
    counts = torch.bincount(d.y_test, minlength=10).tolist()
    assert all(abs(c - 45) <= 1 for c in counts), counts


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_bundled_files_equal_sklearns_loaders(name):
    """data.py reads scikit-learn's bundled CSV files directly (importing sklearn costs seconds): the arrays
    must be exactly what sklearn.datasets.load_* returns."""
    from sklearn import datasets

    ref = getattr(datasets, f"load_{name}")()
    x, y = D._bundled(name)
    assert np.array_equal(x, ref.data) and np.array_equal(y, ref.target)


def test_wine_and_load_by_name():
    w = D.load("wine", seed=0)
    assert (w.x_train.shape[1], w.n_classes, len(w.y_train) + len(w.y_test)) == (13, 3, 178)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load("mnist")
    with pytest.raises(ValueError, match="needs a local folder"):
        D.load("cifar10")


def test_stratified_split_is_a_partition():
    y = np.repeat(np.arange(4), [10, 20, 30, 41])
    tr, te = D.stratified_split(y, 0.25, seed=7)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(y)))
    assert [int((y[te] == c).sum()) for c in range(4)] == [round(0.25 * n) for n in (10, 20, 30, 41)]
    with pytest.raises(ValueError, match="test_fraction"):
        D.stratified_split(y, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def _batch(n, seed, str_keys=False):
    rs = np.random.RandomState(seed)
    d = {b"batch_label": b"training batch", b"labels": rs.randint(0, 10, n).tolist(),
         b"data": rs.randint(0, 256, (n, 3072)).astype(np.uint8), b"filenames": [b"x.png"] * n}
    return {k.decode(): v for k, v in d.items()} if str_keys else d


def _write(folder, name, obj, protocol=2):
    with open(os.path.join(folder, name), "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_load(tmp_path, protocol):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = [_batch(8, i, str_keys=(i == 2)) for i in range(5)]
    for i, b in enumerate(batches):
        _write(root, f"data_batch_{i + 1}", b, protocol)
    _write(root, "test_batch", _batch(6, 99), protocol)
    s = D.load_cifar10(tmp_path)  # the parent folder works too
    assert (s.x_train.shape, s.x_test.shape, s.n_classes) == ((40, 3072), (6, 3072), 10)
    labels = np.concatenate([np.asarray(b[b"labels"] if b"labels" in b else b["labels"]) for b in batches])
    assert s.y_train.tolist() == labels.tolist()
    # per-channel standardization with the training set's statistics (float32 rounding: 1e-5)
    ch = s.x_train.double().reshape(40, 3, 1024)
    assert torch.allclose(ch.mean((0, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(ch.std((0, 2), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw = np.concatenate([b[b"data"] if b"data" in b else b["data"] for b in batches]).astype(np.float64) / 255
    r = raw.reshape(40, 3, 1024)
    expect = (r - r.mean((0, 2), keepdims=True)) / r.std((0, 2), keepdims=True)
    assert np.allclose(s.x_train.numpy().reshape(40, 3, 1024), expect, atol=1e-5)
    sub = D.load_cifar10(root, n_train=10, n_test=3)
    assert (len(sub.y_train), len(sub.y_test)) == (10, 3)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_code_in_the_pickle(tmp_path):
    marker = tmp_path / "pwned"
    _write(tmp_path, "test_batch", {b"data": _Evil(marker), b"labels": []})
    with pytest.raises(ValueError, match="forbidden global"):
        D.read_cifar_batch(tmp_path / "test_batch")
    assert not marker.exists()
    _write(tmp_path, "test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [eval]}, protocol=4)
    with pytest.raises(ValueError, match="forbidden global builtins.eval"):
        D.read_cifar_batch(tmp_path / "test_batch")


@pytest.mark.parametrize("obj,match", [
    ([1, 2], "expected a dict"),
    ({b"labels": [1]}, "no 'data' entry"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, "uint8 array"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "1 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, "labels must be in 0..9"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, "list of ints"),
])
def test_cifar_bad_batches(tmp_path, obj, match):
    _write(tmp_path, "b", obj)
    with pytest.raises(ValueError, match=match):
        D.read_cifar_batch(tmp_path / "b")


def test_cifar_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        D.load_cifar10(tmp_path)
    (tmp_path / "t").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 batch"):
        D.read_cifar_batch(tmp_path / "t")
    _write(tmp_path, "test_batch", _batch(2, 0))
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 training batch"):
        D.load_cifar10(tmp_path)
