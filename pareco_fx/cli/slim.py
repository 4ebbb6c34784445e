"""``pareco-fx slim MODEL``: train a slimmable network with PareCO and report its Pareto front.

Besides the trainer's files (config.json, checkpoint.pt, history.json, front.json, front.csv) the
run directory gets ``source.json`` — where the model and the data came from, the input shape,
min width and divisor — so that ``--resume`` and ``pareco-fx export`` can rebuild the model, and
the plots ``front.png`` and ``widths.png``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pareco_fx.cli.context import AppContext, check_names, debug_option, emit_json, pass_app
from pareco_fx.errors import CheckpointError, UserInputError

if TYPE_CHECKING:
    from pareco_fx.optim.distributed import Comm

__all__ = ["slim_cmd", "SOURCE", "load_data", "read_source"]

SOURCE = "source.json"
_DEFAULTS = {"input_shape": None, "data": None, "min_width": 0.42, "divisor": 1}


def load_data(loaded: Any, source: str, seed: int) -> tuple[Any, Any, Any]:
    """(train, val, test) of a run: the model file's ``datasets()`` when ``source`` is ``"model"``,
    else Fashion-MNIST from ``source`` (``embedded``, ``fashion-mnist`` or a directory)."""
    if source == "model":
        return loaded.load_datasets()
    from pareco_fx.data import load_fashion_mnist

    return load_fashion_mnist(source, seed=seed)


def read_source(run_dir: Path) -> dict[str, Any]:
    """The ``source.json`` of a run directory.

    Raises:
        CheckpointError: missing or unreadable.
    """
    path = run_dir / SOURCE
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {run_dir} was not made by `pareco-fx slim`")
    try:
        data = json.loads(path.read_text())
        return {key: data[key] for key in ("model", *_DEFAULTS)}
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is corrupted ({type(e).__name__}: {e}); re-run `pareco-fx slim`") from e


def _data_source(data: str | None, loaded: Any) -> str:
    if data is None:
        return "model" if loaded.datasets is not None else "embedded"
    if data in ("embedded", "fashion-mnist"):
        return data
    return str(Path(data).resolve())  # export may run from another directory


@click.command("slim")
@click.argument("model_spec", metavar="MODEL")
@click.option("--cost", help="Cost model to trade accuracy against: flops, memory, params or a registered one "
                             "[default: flops].")
@click.option("--method", help="Sampler: pareco, slim (uniform widths) or twostage [default: pareco].")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Training batch size.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), help="Peak learning rate (for batch size 128).")
@click.option("--min-width", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Smallest width of a channel group [default: 0.42].")
@click.option("--width-vectors", type=click.IntRange(min=1),
              help="Width vectors pareco visits over the run [default: 50]; longer runs take more (the paper ~1,000).")
@click.option("--rescore-every", type=click.IntRange(min=1),
              help="pareco re-scores its history every K-th re-sampling only, K times less of its overhead "
                   "[default: 1, the paper's].")
@click.option("--pareto-aware/--no-pareto-aware", default=None,
              help="pareco aims its search at the gaps of the current front (the paper's --pas) [default: off].")
@click.option("--front-fill", type=click.IntRange(min=0),
              help="Width vectors pareco adds after training where its front has gaps, searched on the trained "
                   "weights [default: 0].")
@click.option("--divisor", type=click.IntRange(min=1), help="Channel counts are multiples of this [default: 1].")
@click.option("--data", help="embedded, fashion-mnist or a directory of Fashion-MNIST IDX files "
                             "[default: the model file's datasets(), else embedded].")
@click.option("--input-shape", metavar="SHAPE", help="Shape of a random example input, e.g. 1,3,64,64.")
@click.option("--out", "out_dir", metavar="DIR", help="Run directory [default: runs/<model>-<method>-<cost>].")
@click.option("--seed", type=int, help="Seed of the weights, data split and order, and sampler [default: 0].")
@click.option("--device", help="Where to train: cpu, cuda or cuda:N [default: cuda when available, else cpu; "
              "under torchrun, the process's own GPU with nccl and the CPU with gloo].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Start over in an --out that holds a run.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the front as one JSON object.")
@debug_option
@pass_app
def slim_cmd(app: AppContext, model_spec: str, cost: str | None, method: str | None, epochs: int | None,
             batch_size: int | None, lr: float | None, min_width: float | None, width_vectors: int | None,
             rescore_every: int | None, pareto_aware: bool | None, front_fill: int | None, divisor: int | None,
             data: str | None, input_shape: str | None, out_dir: str | None, seed: int | None, device: str | None,
             resume: bool, force: bool, no_progress: bool, as_json: bool) -> None:
    """Train MODEL's shared weights and per-group widths; write the front to the run directory.

    Under ``torchrun`` every process runs this command; they train together (see the README's
    multi-process section) and only rank 0 writes the run directory and prints.
    """
    from pareco_fx.optim.distributed import distributed_from_env

    with distributed_from_env() as comm:
        sampler = dict(num_width_vectors=width_vectors, rescore_every=rescore_every, pareto_aware=pareto_aware,
                       front_fill=front_fill)
        _slim(app, comm, model_spec, cost, method, epochs, batch_size, lr, min_width, sampler, divisor, data,
              input_shape, out_dir, seed, device, resume, force, no_progress, as_json)


def _slim(app: AppContext, comm: Comm, model_spec: str, cost: str | None, method: str | None, epochs: int | None,
          batch_size: int | None, lr: float | None, min_width: float | None, sampler: dict[str, Any],
          divisor: int | None, data: str | None,
          input_shape: str | None, out_dir: str | None, seed: int | None, device: str | None, resume: bool,
          force: bool, no_progress: bool, as_json: bool) -> None:
    import torch

    import pareco_fx
    from pareco_fx import cost_models, modelfile
    from pareco_fx.optim import METHODS, TrainConfig, train
    from pareco_fx.optim.checkpoint import write_json
    from pareco_fx.report import front_table, load_front, plot_front, plot_widths

    if resume and force:
        raise UserInputError("--resume and --force exclude each other: continue the run or start over")
    check_names([method] if method else [], METHODS, "method")
    check_names([cost] if cost else [], sorted(cost_models.available()), "cost model")
    where = training_device(device, comm)
    given = {k: v for k, v in dict(method=method, cost=cost, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, **sampler).items() if v is not None}
    fresh = TrainConfig().replace(**given)
    out = Path(out_dir or Path("runs") / f"{modelfile.spec_name(model_spec)}-{fresh.method}-{fresh.cost}")
    stored = comm.on_main(lambda: _stored_run(out, resume, force))  # the run directory is rank 0's
    config = TrainConfig.from_dict(stored["config"]).replace(**given) if stored else fresh
    src = {**_DEFAULTS, **(stored["source"] if stored else {})}
    shape = list(modelfile.parse_input_shape(input_shape)) if input_shape else None
    src.update({k: v for k, v in dict(input_shape=shape, min_width=min_width, divisor=divisor).items()
                if v is not None})

    torch.manual_seed(config.seed)  # the initial weights
    loaded = modelfile.load(model_spec, src["input_shape"])
    src["model"] = loaded.source
    if data is not None or src["data"] is None:
        src["data"] = _data_source(data, loaded)
    if stored:  # refuse before anything is written
        _refuse_changes(out, {**stored["config"], **stored["source"]}, {**config.to_dict(), **src})
    train_set, val_set, test_set = load_data(loaded, src["data"], config.seed)
    _check_fits(loaded, train_set, src["data"])
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs, min_width=src["min_width"],
                                    divisor=src["divisor"])
    slim.to(where)
    if comm.is_main and not stored:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / SOURCE, src)
    try:
        result = train(slim, train_set, val_set, test_set, config=config, run_dir=out, resume=resume,
                       progress=not no_progress, force=force, model_name=loaded.name)
    except KeyboardInterrupt:
        if comm.is_main:
            app.err.print(f"interrupted: the last checkpoint is in {out}; continue with --resume --out {out}")
        sys.exit(130)
    if not comm.is_main:
        return

    front = load_front(out)
    plot_front([front], out / "front.png")
    plot_widths(front, out / "widths.png")
    if as_json:
        emit_json({**front.to_json(), "run_dir": str(out)})
        return
    app.out.print(front_table(front))
    app.err.print(f"run written to {out}/ (front.json, front.csv, front.png, widths.png, checkpoint.pt)")
    app.err.print("time: " + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in result.seconds.items()))


def training_device(requested: str | None, comm: Comm) -> Any:
    """The torch device to train on: ``requested`` checked against this machine, else the default.

    Raises:
        UserInputError: not a device name, not cpu/cuda, CUDA missing, a GPU index out of range, or
            a device other than the process's own GPU under ``torchrun`` with nccl.
    """
    import torch

    if requested is None:
        if comm.active:
            return comm.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as e:
        raise UserInputError(f"--device {requested!r} is not a device ({e}); use cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(f"--device {requested!r}: only cpu and cuda are supported; use cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserInputError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise UserInputError(f"--device {requested}: this machine has {count} GPU(s), cuda:0 to "
                                 f"cuda:{count - 1}; choose one of them")
    if comm.device.type == "cuda" and device.type == "cuda" and device.index is None:
        return comm.device
    if comm.device.type == "cuda" and device != comm.device:
        raise UserInputError(f"--device {requested}: under torchrun with nccl each process trains on its own "
                             f"GPU ({comm.device}); leave --device out")
    return device


def _check_fits(loaded: Any, train_set: Any, data: str) -> None:
    """One training example through the model, so that data of the wrong shape fails here, in one
    line, rather than inside the first training step."""
    from pareco_fx.modelfile import check_runs

    x = train_set[0][0]
    what = "the model file's datasets()" if data == "model" else f"the {data} data"
    check_runs(loaded.model, (x.unsqueeze(0),), f"{loaded.name} fails on examples of shape {tuple(x.shape)} "
               f"from {what}", "define datasets() in the model file, or give a model for these inputs")


def _stored_run(out: Path, resume: bool, force: bool) -> dict[str, Any] | None:
    """The stored config and source of the run to resume (None for a fresh run).

    Refuses, before anything is written, to overwrite a run without --resume or --force.
    """
    from pareco_fx.optim.trainer import CHECKPOINT, CONFIG

    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} exists and is not a directory; choose another --out")
    if not resume:
        if (out / CHECKPOINT).exists() and not force:
            raise UserInputError(f"{out} already holds a training run; continue it (--resume), start over "
                                 "(--force) or choose another --out")
        return None
    if not (out / CHECKPOINT).is_file():
        return None  # nothing to resume yet: a fresh start
    try:
        return {"config": json.loads((out / CONFIG).read_text()), "source": read_source(out)}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{out / CONFIG} is missing or corrupted ({e}); start over with --force") from e


def _refuse_changes(out: Path, stored: dict[str, Any], now: dict[str, Any]) -> None:
    diff = [f"{k}={now[k]!r} (run has {stored.get(k)!r})" for k in now if now[k] != stored.get(k)]
    if diff:
        raise UserInputError(f"cannot resume {out}: options differ from the stored run: {', '.join(diff)}; "
                             "resume with the run's options, or start over with --force")
