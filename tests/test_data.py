"""Fashion-MNIST loading: the embedded subset, IDX directories, stratified seeded splits."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pareco_fx.data import (
    DEFAULT_DIR,
    EMBEDDED_PATH,
    IDX_FILES,
    load_fashion_mnist,
    read_idx,
    read_idx_dir,
    stratified_indices,
)
from pareco_fx.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]


def _labels(dataset) -> np.ndarray:
    return dataset.labels.numpy()


def test_embedded_subset_is_stratified_and_shaped() -> None:
    train, val, test = load_fashion_mnist("embedded")
    assert (len(train), len(val), len(test)) == (4500, 500, 1000)
    assert np.bincount(_labels(train)).tolist() == [450] * 10
    assert np.bincount(_labels(val)).tolist() == [50] * 10
    assert np.bincount(_labels(test)).tolist() == [100] * 10
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and isinstance(label, int)
    pixels = torch.stack([train[i][0] for i in range(0, 4500, 9)])
    assert abs(float(pixels.mean())) < 0.05 and abs(float(pixels.std()) - 1.0) < 0.05


def test_validation_split_is_disjoint_seeded_and_leaves_test_alone() -> None:
    with np.load(EMBEDDED_PATH) as npz:
        labels, images, test_images = npz["train_labels"], npz["train_images"], npz["test_images"]
    kept, taken = stratified_indices(labels, 0.1, seed=0)
    assert len(np.intersect1d(kept, taken)) == 0 and len(kept) + len(taken) == len(labels)
    train, val, test = load_fashion_mnist("embedded", val_fraction=0.1, seed=0)
    assert torch.equal(train.images, torch.from_numpy(images[kept]))
    assert torch.equal(val.images, torch.from_numpy(images[taken]))
    assert torch.equal(test.images, torch.from_numpy(test_images))
    again = load_fashion_mnist("embedded", seed=0)[1]
    other = load_fashion_mnist("embedded", seed=1)[1]
    assert torch.equal(again.images, val.images) and not torch.equal(other.images, val.images)
    assert len(load_fashion_mnist("embedded", val_fraction=0.2)[1]) == 1000


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_round_trip(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (40, 28, 28)), "train_labels": np.repeat(np.arange(10), 4),
        "test_images": rng.integers(0, 256, (20, 28, 28)), "test_labels": np.repeat(np.arange(10), 2),
    }
    for key, name in IDX_FILES.items():
        _write_idx(tmp_path / name, arrays[key], compress)
    read = read_idx_dir(tmp_path)
    for key in IDX_FILES:
        assert np.array_equal(read[key], arrays[key])
    train, val, test = load_fashion_mnist(tmp_path, val_fraction=0.25)
    assert (len(train), len(val), len(test)) == (30, 10, 20)
    assert np.bincount(_labels(val)).tolist() == [1] * 10


def test_missing_directory_or_files_are_named(tmp_path) -> None:
    with pytest.raises(UserInputError, match="does not exist.*train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path / "nowhere")
    _write_idx(tmp_path / IDX_FILES["train_images"], np.zeros((1, 28, 28)), compress=False)
    _write_idx(tmp_path / IDX_FILES["train_labels"], np.zeros(1), compress=True)
    with pytest.raises(UserInputError) as err:
        load_fashion_mnist(tmp_path)
    message = str(err.value)
    assert "lacks t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in message
    assert "lacks train" not in message


def test_truncated_idx_file(tmp_path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(5))
    with pytest.raises(UserInputError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(UserInputError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_embedded_subset_is_what_the_script_makes(tmp_path) -> None:
    out = tmp_path / "subset.npz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_embedded_subset.py"), "--out", str(out)],
                   check=True, capture_output=True)
    with np.load(out) as made, np.load(EMBEDDED_PATH) as shipped:
        assert sorted(made.files) == sorted(shipped.files) == sorted(IDX_FILES)
        for key in IDX_FILES:
            assert np.array_equal(made[key], shipped[key]), key
