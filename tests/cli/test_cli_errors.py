"""Bad input on the command line: one red line on stderr, exit code 2, no traceback, no file changed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_helpers import TINY_CNN, assert_one_line_error, state

UNTRACEABLE = """
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


def model():
    return Branchy()


def example_inputs():
    return (torch.randn(1, 3, 8, 8),)
"""

# case: (model file text or bytes or None for "absent", extra args, expected part of the message)
MODEL_CASES = {
    "missing": (None, [], "not found"),
    "not_python": (b"\x00\x01binary\xff", [], "not a Python file"),
    "syntax_error": ("def model(:\n", [], "not valid Python"),
    "raises_on_import": ("raise ImportError('no module named fancy_layers')\n", [],
                         "raised ImportError: no module named fancy_layers on import"),
    "no_model": ("import torch\n", [], "defines no model()"),
    "non_module": ("def model():\n    return 'resnet'\n", [], "returned str, not a torch.nn.Module"),
    "no_example_inputs": ("from torch import nn\ndef model():\n    return nn.Linear(3, 3)\n", [],
                          "--input-shape"),
    "wrong_input_shape": (TINY_CNN, ["--input-shape", "1,5,12,12"], "fails on example inputs of shape (1, 5, 12, 12)"),
    "bad_input_shape": (TINY_CNN, ["--input-shape", "1,three"], "bad --input-shape"),
    "untraceable": (UNTRACEABLE, [], "Branchy"),
    "unknown_cost": (TINY_CNN, ["--cost", "latency"], "unknown cost model 'latency'; available: "),
    "bad_min_width": (TINY_CNN, ["--min-width", "1.5"], "--min-width"),
}


def write_case(tmp_path: Path, content: str | bytes | None) -> Path:
    path = tmp_path / "user_model.py"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_inspect_bad_model_input(tmp_path: Path, run_cli, case: str) -> None:
    content, extra, message = MODEL_CASES[case]
    path = write_case(tmp_path, content)
    before = state(tmp_path)
    result = run_cli("inspect", str(path), *extra)
    assert_one_line_error(result, message)
    assert state(tmp_path) == before


def test_untraceable_error_names_the_line(tmp_path: Path, run_cli) -> None:
    path = write_case(tmp_path, UNTRACEABLE)
    result = run_cli("inspect", str(path))
    line_no = UNTRACEABLE.splitlines().index("        if y.sum() > 0:") + 1
    assert_one_line_error(result, str(line_no))


@pytest.mark.parametrize("option, value, message", [
    ("--method", "random", "unknown method 'random'; available: pareco, slim, twostage"),
    ("--cost", "latency", "unknown cost model 'latency'; available: "),
    ("--data", "/nonexistent/fashion", "/nonexistent/fashion"),
    ("--device", "meta", "--device 'meta': only cpu and cuda are supported; use cpu, cuda or cuda:N"),
    ("--device", "gpu0", "--device 'gpu0' is not a device"),
    pytest.param("--device", "cuda", "--device cuda: CUDA is not available on this machine; use --device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_slim_bad_options(tmp_path: Path, run_cli, model_file, option: str, value: str, message: str) -> None:
    path = model_file(TINY_CNN)
    before = state(tmp_path)
    result = run_cli("slim", str(path), option, value, "--out", str(tmp_path / "run"), "--epochs", "1")
    assert_one_line_error(result, message)
    assert state(tmp_path) == before
    assert not (tmp_path / "run").exists()


def test_slim_front_fill_for_a_baseline(tmp_path: Path, run_cli, model_file) -> None:
    path = model_file(TINY_CNN)
    before = state(tmp_path)
    result = run_cli("slim", str(path), "--method", "slim", "--front-fill", "5", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "front_fill applies to pareco only")
    assert state(tmp_path) == before


def test_slim_data_dir_with_wrong_files(tmp_path: Path, run_cli, model_file) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "readme.txt").write_text("not the IDX files")
    path = model_file(TINY_CNN)
    before = state(tmp_path)
    result = run_cli("slim", str(path), "--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "train-images-idx3-ubyte")
    assert state(tmp_path) == before


def test_slim_data_of_the_wrong_shape(tmp_path: Path, run_cli) -> None:
    # resnet18 wants 3 channels; the embedded Fashion-MNIST has 1
    result = run_cli("slim", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--data", "embedded",
                     "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "resnet18 fails on examples of shape (1, 28, 28) from the embedded data")
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupted_run_directories(tmp_path: Path, run_cli) -> None:
    assert_one_line_error(run_cli("front", str(tmp_path / "nope")), "not found")
    assert_one_line_error(run_cli("export", str(tmp_path / "nope"), "--budget", "0.5", "--out",
                                  str(tmp_path / "sub.pt")), "not found")
    run = tmp_path / "run"
    run.mkdir()
    for text in ('{"model": "m", "points": [', json.dumps({"model": "m"})):
        (run / "front.json").write_text(text)
        before = state(tmp_path)
        assert_one_line_error(run_cli("front", str(run)), "corrupted")
        assert_one_line_error(run_cli("export", str(run), "--budget", "0.5", "--out", str(tmp_path / "sub.pt")),
                              "corrupted")
        assert state(tmp_path) == before


def test_bad_budgets_option(tmp_path: Path, run_cli) -> None:
    assert_one_line_error(run_cli("front", str(tmp_path), "--budgets", "half"), "bad --budgets")


def test_usage_errors_are_one_line_too(run_cli) -> None:
    assert_one_line_error(run_cli("inspect"), "Missing argument 'MODEL'")
    assert_one_line_error(run_cli("frobnicate"), "No such command 'frobnicate'")
    assert_one_line_error(run_cli("slim", "x.py", "--epochs", "zero"), "--epochs")


def test_debug_shows_the_traceback(tmp_path: Path, run_cli) -> None:
    path = write_case(tmp_path, "raise RuntimeError('boom')\n")
    for args in (["--debug", "inspect", str(path)], ["inspect", str(path), "--debug"]):
        result = run_cli(*args)
        assert result.exit_code == 2
        assert "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: ")


def test_help_lists_the_commands(run_cli) -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("inspect", "slim", "front", "export"):
        assert command in result.stdout
    assert run_cli("--version").stdout.startswith("pareco-fx, version ")
