"""Fashion-MNIST, offline: an embedded stratified subset or the IDX files of a local copy.

The package ships a seeded, stratified subset of the real Fashion-MNIST (5,000 training and 1,000
test images, MIT licence, see ``LICENSE-fashion-mnist``) made by ``scripts/make_embedded_subset.py``
from the files that Debian's ``dataset-fashion-mnist`` installs. The full set is read from any
directory holding the four IDX files (plain or gzipped). Nothing is ever downloaded.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pareco_fx.errors import UserInputError

__all__ = [
    "CLASSES",
    "DEFAULT_DIR",
    "EMBEDDED_PATH",
    "IDX_FILES",
    "ImageDataset",
    "MEAN",
    "STD",
    "load_fashion_mnist",
    "read_idx",
    "read_idx_dir",
    "stratified_indices",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
EMBEDDED_PATH = Path(__file__).with_name("fashion_mnist_subset.npz")
# Keys of the embedded .npz and of read_idx_dir's result, mapped to the IDX file names.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Per-pixel statistics of the full Fashion-MNIST training set.
MEAN, STD = 0.2860, 0.3530

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageDataset(Dataset):
    """Grey-scale images held as uint8, served as normalised float tensors.

    Args:
        images: uint8 tensor ``[N, H, W]``.
        labels: integer tensor ``[N]``.

    Items are ``(Tensor[1, H, W] float32, int)``, normalised with Fashion-MNIST's mean and std.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 3 or len(images) != len(labels):
            raise ValueError("ImageDataset wants uint8 images [N, H, W] and as many labels")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].unsqueeze(0).float().div_(255.0).sub_(MEAN).div_(STD)
        return image, int(self.labels[index])


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a numpy array of its stored type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserInputError(f"{path} is not an IDX file (bad magic number); use the original files")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserInputError(f"{path} is truncated: header says {shape}, file holds {data.size} values")
    return data.reshape(shape).copy()  # writable, detached from the file buffer


def _find_idx(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx_dir(directory: str | Path) -> dict[str, np.ndarray]:
    """Read the four Fashion-MNIST IDX files of ``directory`` (keys as in ``IDX_FILES``).

    Raises:
        UserInputError: the directory is missing or lacks some of the four files.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserInputError(
            f"data directory {directory} does not exist; give a directory holding "
            f"{', '.join(IDX_FILES.values())} (optionally .gz), or install Debian's "
            "dataset-fashion-mnist, or use --data embedded"
        )
    paths = {key: _find_idx(directory, name) for key, name in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise UserInputError(
            f"data directory {directory} lacks {', '.join(missing)} (plain or .gz); it must hold "
            f"all four Fashion-MNIST IDX files: {', '.join(IDX_FILES.values())}"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserInputError(
                f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match"
            )
    return arrays


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, taken) with ``round(fraction * count)`` taken from every class.

    The split is seeded and stratified: each class gives the same share. Both index arrays are
    sorted.
    """
    rng = np.random.default_rng(seed)
    taken = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        taken.append(rng.permutation(members)[: int(round(fraction * len(members)))])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    kept_idx = np.setdiff1d(np.arange(len(labels)), taken_idx)
    return kept_idx, taken_idx


def _load_arrays(source: str | Path) -> dict[str, np.ndarray]:
    if str(source) == "embedded":
        with np.load(EMBEDDED_PATH) as npz:
            return {key: npz[key] for key in IDX_FILES}
    return read_idx_dir(DEFAULT_DIR if str(source) == "fashion-mnist" else source)


def load_fashion_mnist(
    source: str | Path = "embedded", val_fraction: float = 0.1, seed: int = 0
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Load Fashion-MNIST as (train, validation, test) datasets.

    Args:
        source: ``"embedded"`` (the subset shipped in the package), ``"fashion-mnist"`` (the
            Debian files under ``/usr/share/datasets/fashion-mnist``) or a directory holding the
            four IDX files.
        val_fraction: share of every class of the training images held out for validation.
        seed: seed of the validation split.

    Returns:
        Three datasets of ``(Tensor[1, 28, 28], int)``; the validation images are carved out of the
        training images (stratified), the test images are untouched.

    Raises:
        UserInputError: the directory is missing or lacks some IDX file.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserInputError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    arrays = _load_arrays(source)
    train_x = torch.from_numpy(np.ascontiguousarray(arrays["train_images"]))
    train_y = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    kept, held = stratified_indices(arrays["train_labels"], val_fraction, seed)
    kept_t, held_t = torch.from_numpy(kept), torch.from_numpy(held)
    test = ImageDataset(
        torch.from_numpy(np.ascontiguousarray(arrays["test_images"])),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )
    return ImageDataset(train_x[kept_t], train_y[kept_t]), ImageDataset(train_x[held_t], train_y[held_t]), test
