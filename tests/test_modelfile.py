"""Loading MODEL specs: model files and torchvision:NAME, and every way a model file can be wrong."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from pareco_fx import modelfile
from pareco_fx.errors import UserInputError

TINY = """
import torch
from torch import nn

def model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))

def example_inputs():
    return torch.zeros(2, 3, 8, 8)
"""


def write(tmp_path: Path, text: str, name: str = "net.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def test_file_with_model_and_example_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, TINY)
    loaded = modelfile.load(str(path))
    assert loaded.name == "net"
    assert loaded.source == str(path.resolve())
    assert isinstance(loaded.model, nn.Sequential) and len(loaded.model) == 4
    assert len(loaded.example_inputs) == 1 and loaded.example_inputs[0].shape == (2, 3, 8, 8)
    assert loaded.datasets is None
    assert loaded.model(*loaded.example_inputs).shape == (2, 2)


def test_build_model_and_input_shape_override(tmp_path: Path) -> None:
    path = write(tmp_path, """
        from torch import nn
        def build_model():
            return nn.Linear(5, 3)
        def example_inputs():
            raise AssertionError("not called when --input-shape is given")
    """)
    loaded = modelfile.load(str(path), "4,5")
    assert isinstance(loaded.model, nn.Linear)
    (x,) = loaded.example_inputs
    assert x.shape == (4, 5)
    # seeded: the same shape gives the same example input every time
    assert torch.equal(x, modelfile.load(str(path), (4, 5)).example_inputs[0])


def test_loading_is_repeatable_and_leaves_the_directory_alone(tmp_path: Path) -> None:
    path = write(tmp_path, TINY)
    before = snapshot(path)
    first, second = modelfile.load(str(path)), modelfile.load(str(path))
    assert first.model is not second.model  # a fresh module each time
    assert snapshot(path) == before  # no __pycache__, file untouched


def test_sibling_imports_work(tmp_path: Path) -> None:
    write(tmp_path, "WIDTH = 7\n", name="helper_mod_for_test.py")
    path = write(tmp_path, """
        from torch import nn
        from helper_mod_for_test import WIDTH
        def model():
            return nn.Linear(3, WIDTH)
        def example_inputs():
            import torch
            return (torch.zeros(1, 3),)
    """)
    assert modelfile.load(str(path)).model.out_features == 7


def test_datasets_are_loaded_lazily_and_checked(tmp_path: Path) -> None:
    path = write(tmp_path, TINY + textwrap.dedent("""
        from torch.utils.data import TensorDataset
        CALLS = []
        def datasets():
            CALLS.append(1)
            d = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
            return d, d
    """))
    loaded = modelfile.load(str(path))
    assert loaded.datasets is not None
    train, val, test = loaded.load_datasets()
    assert len(train) == len(val) == 4 and test is None

    bad = write(tmp_path, TINY + "def datasets():\n    return [1, 2, 3]\n", name="bad_data.py")
    with pytest.raises(UserInputError, match="returned a int as the train set"):
        modelfile.load(str(bad)).load_datasets()


def test_torchvision_model() -> None:
    loaded = modelfile.load("torchvision:resnet18", "1,3,32,32")
    assert loaded.name == "resnet18" and loaded.source == "torchvision:resnet18"
    assert type(loaded.model).__name__ == "ResNet"
    assert loaded.example_inputs[0].shape == (1, 3, 32, 32)
    assert modelfile.DEFAULT_INPUT_SHAPE == (1, 3, 224, 224)


def test_unknown_torchvision_model_suggests_names() -> None:
    with pytest.raises(UserInputError, match="did you mean resnet18"):
        modelfile.load("torchvision:resnet81")


@pytest.mark.parametrize("text, expected", [("1,3,64,64", (1, 3, 64, 64)), (" 2, 5 ", (2, 5)), ("1x3x8x8", (1, 3, 8, 8))])
def test_parse_input_shape(text: str, expected: tuple[int, ...]) -> None:
    assert modelfile.parse_input_shape(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "1,0,3", "1,-2", "1.5,2"])
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(UserInputError, match="--input-shape"):
        modelfile.parse_input_shape(text)


# Every way a model file can be wrong: (file contents or None for "missing", expected message part).
BAD_FILES = {
    "missing": (None, "not found"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a Python file"),
    "syntax": ("def model(:\n    pass\n", "not valid Python (line 1"),
    "raises": ("raise RuntimeError('boom at import')\n", "raised RuntimeError: boom at import on import"),
    "exits": ("import sys\nsys.exit(3)\n", "raised SystemExit"),
    "no_model": ("X = 1\n", "defines no model() or build_model()"),
    "non_module": ("def model():\n    return 42\n", "model() returned int, not a torch.nn.Module"),
    "model_raises": ("def model():\n    raise ValueError('bad width')\n", "model() raised ValueError: bad width"),
    "no_inputs": ("from torch import nn\ndef model():\n    return nn.Linear(2, 2)\n", "defines no example_inputs()"),
    "bad_inputs": ("from torch import nn\ndef model():\n    return nn.Linear(2, 2)\ndef example_inputs():\n    return 3\n",
                   "example_inputs() must return a tensor or a tuple of tensors"),
    "wrong_shape": ("import torch\nfrom torch import nn\ndef model():\n    return nn.Linear(2, 2)\n"
                    "def example_inputs():\n    return torch.zeros(1, 5)\n", "fails on example inputs of shape (1, 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_model_files(tmp_path: Path, case: str) -> None:
    content, message = BAD_FILES[case]
    path = tmp_path / "model.py"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    before = snapshot(path) if path.exists() else None
    with pytest.raises(UserInputError) as info:
        modelfile.load(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    if before is not None:
        assert snapshot(path) == before


def test_a_directory_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a file"):
        modelfile.load(str(tmp_path))


def test_forward_check_keeps_training_mode_and_batchnorm_statistics(tmp_path: Path) -> None:
    path = write(tmp_path, """
        import torch
        from torch import nn
        def model():
            return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        def example_inputs():
            return (torch.randn(2, 3, 4, 4),)
    """)
    loaded = modelfile.load(str(path))
    bn = loaded.model[1]
    assert loaded.model.training
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(4))
