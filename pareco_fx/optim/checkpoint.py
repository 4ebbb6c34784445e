"""Run-directory files: atomic checkpoints, RNG states, JSON."""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pareco_fx.errors import CheckpointError, UserInputError
from pareco_fx.optim.config import TrainConfig

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "capture_rng",
    "load_checkpoint",
    "load_weights",
    "restore_rng",
    "save_checkpoint",
    "write_atomic",
    "write_json",
]

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "pareco-fx-checkpoint-v1"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a reader (or a crash)
    sees either the old file or the new one, never a torn write."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint (tensors and primitives only), tagged with its format."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file is missing, truncated, or not a pareco-fx checkpoint.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (or drop --resume)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} is truncated or not a pareco-fx checkpoint ({type(exc).__name__}); "
            "delete the run directory or start over with --force"
        ) from exc
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a pareco-fx checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}); "
            "point to a pareco-fx run directory or start over with --force"
        )
    return payload


def capture_rng() -> dict[str, Any]:
    """The python, numpy and torch global RNG states, as tensors and primitives."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    python = state["python"]
    random.setstate((python[-1], tuple(python[:-1]), state["python_gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])


def load_weights(slim: nn.Module, run_dir: str | Path) -> TrainConfig:
    """Load the trained weights of ``run_dir``'s checkpoint into ``slim``; return the run's config.

    Raises:
        CheckpointError: missing, truncated or foreign checkpoint, or one of another model.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    payload = load_checkpoint(path)
    try:
        slim.load_state_dict(payload["model"])
        return TrainConfig.from_dict(payload["config"])
    except (KeyError, RuntimeError, ValueError, TypeError, UserInputError) as exc:
        raise CheckpointError(
            f"{path} does not fit this model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "build the slimmable model from the same model file, min width and divisor"
        ) from exc
