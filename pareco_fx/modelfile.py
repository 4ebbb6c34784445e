"""Load the MODEL argument of the CLI: a Python file or ``torchvision:NAME``.

A model file is plain Python that defines::

    def model() -> torch.nn.Module            # or build_model()
    def example_inputs() -> tuple[Tensor, ...]  # optional: else pass --input-shape
    def datasets() -> (train, val, test)       # optional torch Datasets; else Fashion-MNIST

The file is executed from its source text (no bytecode cache is written next to it), so loading
never changes anything on disk. Every failure is a :class:`~pareco_fx.errors.UserInputError`
that says what is wrong and how to fix it.
"""
from __future__ import annotations

import difflib
import hashlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from pareco_fx.errors import UserInputError

__all__ = ["LoadedModel", "load", "check_runs", "spec_name", "parse_input_shape", "TORCHVISION_PREFIX", "DEFAULT_INPUT_SHAPE"]

TORCHVISION_PREFIX = "torchvision:"
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
_FACTORIES = ("model", "build_model")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for analysis.

    Attributes:
        name: short name (file stem or torchvision model name).
        model: the freshly built module.
        example_inputs: positional inputs of one forward pass.
        datasets: the file's ``datasets()`` function (called lazily by :meth:`load_datasets`,
            since reading data can be slow), or None when the file defines none.
        source: where the model came from (absolute file path or ``torchvision:NAME``), enough to
            load it again from another working directory.
    """

    name: str
    model: nn.Module
    example_inputs: tuple[Any, ...]
    datasets: Callable[[], Any] | None
    source: str

    def load_datasets(self) -> tuple[Dataset, Dataset, Dataset | None]:
        """Call the file's ``datasets()`` and check it returns (train, val[, test]) Datasets.

        Raises:
            UserInputError: no ``datasets()``, it raised, or it returned something else.
        """
        if self.datasets is None:
            raise UserInputError(f"{self.source} defines no datasets(); pass --data instead")
        try:
            out = self.datasets()
        except Exception as e:
            raise UserInputError(f"{self.source}: datasets() raised {_describe(e)}") from e
        if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
            raise UserInputError(
                f"{self.source}: datasets() must return (train, val, test) or (train, val), "
                f"got {type(out).__name__}")
        parts = tuple(out) + (None,) * (3 - len(out))
        for role, ds in zip(("train", "val", "test"), parts):
            if ds is None and role == "test":
                continue
            if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
                raise UserInputError(
                    f"{self.source}: datasets() returned a {type(ds).__name__} as the {role} set; "
                    "return torch.utils.data.Dataset objects")
        return parts  # type: ignore[return-value]


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """Parse ``"1,3,64,64"`` (or a sequence of ints) into a shape of positive ints.

    Raises:
        UserInputError: not a comma-separated list of positive integers.
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
    else:
        shape = tuple(int(d) for d in text)
    if not shape or any(d <= 0 for d in shape):
        raise UserInputError(
            f"bad --input-shape {text!r}: give positive integers separated by commas, e.g. 1,3,64,64")
    return shape


def spec_name(spec: str) -> str:
    """The short name a spec loads as: the file's stem, or the torchvision model's name."""
    return spec[len(TORCHVISION_PREFIX):] if spec.startswith(TORCHVISION_PREFIX) else Path(spec).stem


def load(spec: str, input_shape: str | Sequence[int] | None = None, *, check: bool = True) -> LoadedModel:
    """Load a model spec: a Python file or ``torchvision:NAME`` (built with ``weights=None``).

    Args:
        spec: path to a model file, or ``torchvision:NAME``.
        input_shape: shape of a random example input; overrides the file's ``example_inputs()``.
            Required for files without ``example_inputs()``; torchvision models default to
            1x3x224x224.
        check: run one forward pass (eval mode, no grad) so that inputs that do not fit the model
            fail here with a clear message rather than deep inside tracing.

    Raises:
        UserInputError: the file is missing, not Python, raises on import, defines no model,
            returns a non-Module, has no example inputs (and no input_shape), or the model fails
            on its example inputs.
    """
    shape = parse_input_shape(input_shape) if input_shape is not None else None
    if spec.startswith(TORCHVISION_PREFIX):
        loaded = _load_torchvision(spec[len(TORCHVISION_PREFIX):], shape)
    else:
        loaded = _load_file(Path(spec), shape)
    if check:
        _check_forward(loaded)
    return loaded


def _load_torchvision(name: str, shape: tuple[int, ...] | None) -> LoadedModel:
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise UserInputError(f"unknown torchvision model {name!r}: {hint}")
    model = torchvision.models.get_model(name, weights=None)
    inputs = (_random_input(shape or DEFAULT_INPUT_SHAPE),)
    return LoadedModel(name, model, inputs, None, TORCHVISION_PREFIX + name)


def _load_file(path: Path, shape: tuple[int, ...] | None) -> LoadedModel:
    if not path.exists():
        raise UserInputError(f"model file {str(path)!r} not found; give a Python file or torchvision:NAME")
    if not path.is_file():
        raise UserInputError(f"{str(path)!r} is not a file; give a Python file or torchvision:NAME")
    path = path.resolve()
    module = _exec_file(path)
    found = next((n for n in _FACTORIES if hasattr(module, n)), None)
    if found is None:
        raise UserInputError(f"{path} defines no model() or build_model(); add one returning an nn.Module")
    factory = getattr(module, found)
    model = factory if isinstance(factory, nn.Module) else _call(factory, path, found)
    if not isinstance(model, nn.Module):
        raise UserInputError(
            f"{path}: {found}() returned {type(model).__name__}, not a torch.nn.Module; return the network")
    if shape is not None:
        inputs: tuple[Any, ...] = (_random_input(shape),)
    elif hasattr(module, "example_inputs"):
        inputs = _as_inputs(_call(module.example_inputs, path, "example_inputs"), path)
    else:
        raise UserInputError(
            f"{path} defines no example_inputs(); pass --input-shape (e.g. 1,3,64,64) or define it")
    datasets = getattr(module, "datasets", None)
    if datasets is not None and not callable(datasets):
        raise UserInputError(f"{path}: datasets must be a function returning (train, val, test)")
    return LoadedModel(path.stem, model, inputs, datasets, str(path))


def _exec_file(path: Path) -> types.ModuleType:
    """Execute a model file as a fresh module, from source, writing nothing to disk."""
    try:
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path} is not a Python file (not UTF-8 text); give a .py model file") from e
    except OSError as e:
        raise UserInputError(f"cannot read {path}: {e.strerror}") from e
    try:
        code = compile(source, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        where = f" (line {e.lineno}: {e.msg})" if isinstance(e, SyntaxError) else ""
        raise UserInputError(f"{path} is not valid Python{where}; give a .py model file") from e
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"pareco_fx_user_{path.stem.replace('-', '_')}_{digest}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    # Registered so that classes defined in the file pickle and dataclasses resolve their module.
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # sibling imports of the model file
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # SystemExit or KeyboardInterrupt inside the file too
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise UserInputError(f"{path} raised {_describe(e)} on import; fix the file (--debug shows where)") from e
    finally:
        sys.path.remove(str(path.parent))
    return module


def _call(fn: Any, path: Path, what: str) -> Any:
    if not callable(fn):
        raise UserInputError(f"{path}: {what} is a {type(fn).__name__}, not a function; define {what}()")
    try:
        return fn()
    except Exception as e:
        raise UserInputError(f"{path}: {what}() raised {_describe(e)} (--debug shows where)") from e


def _as_inputs(value: Any, path: Path) -> tuple[Any, ...]:
    inputs = (value,) if isinstance(value, torch.Tensor) else value
    if not isinstance(inputs, (tuple, list)) or not inputs:
        raise UserInputError(
            f"{path}: example_inputs() must return a tensor or a tuple of tensors, got {type(value).__name__}")
    return tuple(inputs)


def _random_input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def check_runs(model: nn.Module, inputs: Sequence[Any], failure: str, fix: str) -> None:
    """Run ``model(*inputs)`` once in eval mode without gradients (no BatchNorm statistic changes;
    the training mode is restored).

    Raises:
        UserInputError: ``"{failure}: {the exception}; {fix}"`` when the model raises.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as e:
        raise UserInputError(f"{failure}: {_describe(e)}; {fix}") from e
    finally:
        model.train(was_training)


def _check_forward(loaded: LoadedModel) -> None:
    shapes = ", ".join(str(tuple(x.shape)) for x in loaded.example_inputs if isinstance(x, torch.Tensor))
    check_runs(loaded.model, loaded.example_inputs, f"{loaded.name} fails on example inputs of shape {shapes}",
               "pass an --input-shape the model accepts")


def _describe(e: BaseException) -> str:
    """``Type: first line of the message`` (torch errors span many lines)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
