"""The PareCO trainer: sandwich rule with inplace distillation, checkpoints, and the final front.

Each step trains the full network with label-smoothed cross entropy, then the sampler's M width
vectors and the smallest network, each with soft cross entropy against the full network's
detached predictions; the gradients are summed and one SGD step is taken. After training, the
front is built (see :mod:`pareco_fx.optim.front`) and written to the run directory.
"""
from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from pareco_fx.errors import CheckpointError, ParecoError, UserInputError
from pareco_fx.optim.checkpoint import (
    CHECKPOINT_FILE as CHECKPOINT,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_atomic,
    write_json,
)
from pareco_fx.optim.config import TrainConfig
from pareco_fx.optim.distributed import Comm
from pareco_fx.optim.evaluate import score_widths, smoothed_ce, soft_ce
from pareco_fx.optim.front import (
    FrontPoint,
    add_test_accuracy,
    distinct_widths,
    evaluate_widths,
    front_candidates,
    select_front,
    uniform_widths,
)
from pareco_fx.optim.history import History, HistoryEntry
from pareco_fx.optim.progress import TrainProgress
from pareco_fx.optim.samplers import Sampler, make_sampler
from pareco_fx.optim.search import bayesian_search, extend_search
from pareco_fx.optim.space import WidthSpace

__all__ = ["NonFiniteLossError", "TrainResult", "learning_rate", "train"]

CONFIG, HISTORY, FRONT_JSON, FRONT_CSV = "config.json", "history.json", "front.json", "front.csv"
# Training batches that score each width vector of twostage's post-training search (the reference's 2).
# PareCO's final re-score uses every recalibration batch instead: it ranks the history to pick the
# front's candidates, and on 2 batches near-tied vectors rank by noise, so better ones go unevaluated.
SEARCH_BATCHES = 2
# Vectors per GP fit of PareCO's front fill: later rounds aim at the gaps the earlier ones left.
FILL_BATCH = 10
_ORDER, _RECAL = 0, 1  # purposes of derived seeds
SIGNAL_ECHO_S = 2.0  # under torchrun, a second stop signal this soon after the first is its echo


class NonFiniteLossError(ParecoError):
    """A training loss became NaN or infinite; the message names the step and the widths."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        front: the selected sub-networks, by increasing cost.
        uniform: uniform-multiplier sub-networks evenly spaced in cost (for comparison plots).
        history: visited width vectors with their final losses (``pareco``: training history, then
            the front fill's vectors at step ``epochs * steps per epoch``; ``twostage``: the
            post-training search; ``slim``: empty).
        config: the configuration used.
        run_dir: where the files were written, or ``None``.
        cost_full: cost of the full network under ``config.cost``.
        seconds: wall time of each phase of this call (``train``; ``re-score``, the history's final
            scoring, and ``fill`` with ``front_fill``, for ``pareco``; ``search`` for ``twostage``;
            ``front``; ``test``, the selected points' test accuracy, where ``slim`` has it within
            ``front``), as rank 0 saw it; a resumed run's ``train`` counts only the steps this call took.
    """

    front: tuple[FrontPoint, ...]
    uniform: tuple[FrontPoint, ...]
    history: tuple[HistoryEntry, ...]
    config: TrainConfig
    run_dir: Path | None
    cost_full: float
    seconds: dict[str, float] = field(default_factory=dict)


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate at ``step``: linear warm-up, then linear or cosine decay to 0 (per iteration).

    The peak is ``config.lr * batch_size / 128``.
    """
    peak = config.lr * config.batch_size / 128
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps - 1)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * (1.0 - progress)


def _seed(seed: int, purpose: int, index: int) -> int:
    """A seed that depends only on the run's seed, a purpose and an index (epoch)."""
    return (seed * 1_000_003 + purpose * 7_919 + index) % (2**63)


def _index_batches(data: Dataset, batch_size: int, seed: int, epoch: int, comm: Comm) -> list[list[int]]:
    """This rank's shares of the full batches of ``epoch``'s shuffled order.

    A ``DistributedSampler`` deals the order out to the ranks one example at a time, so rank r's
    batch i (``batch_size / world_size`` examples) and the other ranks' batch i together hold
    exactly the examples of the single-process batch i: the global batch does not depend on the
    number of processes.
    """
    sampler = DistributedSampler(data, num_replicas=comm.world_size, rank=comm.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    order, local = list(sampler), batch_size // comm.world_size
    return [order[i: i + local] for i in range(0, len(order) - local + 1, local)]


def _loader(data: Dataset, batches: Sequence[Sequence[int]], num_workers: int, seed: int) -> DataLoader:
    # A loader draws its workers' base seed from its generator: an own one keeps the global RNG
    # (dropout, augmentation) independent of where a resumed run re-creates the loader.
    return DataLoader(data, batch_sampler=batches, num_workers=num_workers,  # type: ignore[arg-type]
                      generator=torch.Generator().manual_seed(seed))


def _to(batches: Iterable[tuple[Tensor, Tensor]], device: torch.device) -> list[tuple[Tensor, Tensor]]:
    return [(x.to(device), y.to(device)) for x, y in batches]


def _eval_batches(
    data: Dataset | None, config: TrainConfig, comm: Comm, device: torch.device
) -> list[tuple[Tensor, Tensor]] | None:
    """This rank's share of an evaluation split (every world_size-th example), in batches."""
    if data is None:
        return None
    shard = Subset(data, comm.shard(range(len(data))))  # type: ignore[arg-type]
    return _to(DataLoader(shard, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers), device)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on weight matrices/kernels only (no BatchNorm or bias parameters)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _widths_text(widths: Tensor) -> str:
    return "[" + ", ".join(f"{w:.3f}" for w in widths.tolist()) + "]"


class _StopRequest:
    """Turns the first Ctrl-C into a request honoured at the next step boundary (after a
    checkpoint); a second Ctrl-C interrupts at once.

    Under torchrun (``distributed``) a terminal's Ctrl-C reaches every worker twice, directly and
    forwarded by torchrun, so a second signal within ``SIGNAL_ECHO_S`` is the same request; and
    SIGTERM, which torchrun forwards when it is terminated itself (e.g. by a scheduler), is a
    request too (torchrun waits 30 s before SIGKILL).
    """

    def __init__(self, distributed: bool) -> None:
        self.requested = False
        self._first = 0.0
        self._echo = SIGNAL_ECHO_S if distributed else 0.0
        self._signals = (signal.SIGINT, signal.SIGTERM) if distributed else (signal.SIGINT,)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self._signals}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first = True, now
        elif now - self._first >= self._echo:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class _Trainer:
    """One run's state: model, optimiser, sampler, step, and the run directory.

    Under ``torch.distributed`` every rank holds one; only rank 0's sampler decides and only
    rank 0 writes the run directory.
    """

    def __init__(self, slim: nn.Module, train_data: Dataset, config: TrainConfig, run_dir: Path | None,
                 comm: Comm) -> None:
        self.slim, self.train_data, self.config, self.run_dir, self.comm = slim, train_data, config, run_dir, comm
        if config.batch_size % comm.world_size:
            raise UserInputError(
                f"the batch size {config.batch_size} (the global batch) does not divide among {comm.world_size} "
                f"processes; choose a multiple of {comm.world_size}"
            )
        self.device = next(slim.parameters()).device
        self.params = [p for p in slim.parameters() if p.requires_grad]
        self.space = WidthSpace.from_slim(slim, config.cost)
        per_epoch = len(train_data) // config.batch_size  # type: ignore[arg-type]
        if per_epoch == 0:
            raise UserInputError(
                f"the training set has {len(train_data)} examples, fewer than one batch of "  # type: ignore[arg-type]
                f"{config.batch_size}; lower the batch size"
            )
        self.steps_per_epoch = min(per_epoch, config.max_train_batches or per_epoch)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.optimizer = _make_optimizer(slim, config)
        self.sampler: Sampler = make_sampler(self.space, config, self.total_steps)
        self.step = 0

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "num_groups": self.space.num_groups,
            "model": self.slim.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng(),
        }

    def restore(self, payload: dict[str, Any], path: Path) -> None:
        if payload.get("num_groups") != self.space.num_groups or payload.get("steps_per_epoch") != self.steps_per_epoch:
            raise CheckpointError(
                f"{path} belongs to a different model or data set ({payload.get('num_groups')} groups, "
                f"{payload.get('steps_per_epoch')} steps per epoch; this run has {self.space.num_groups} and "
                f"{self.steps_per_epoch}); resume with the same model and data or start over with --force"
            )
        try:
            self.slim.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.sampler.load_state_dict(payload["sampler"])
            restore_rng(payload["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{path} does not fit this model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "resume with the same model file or start over with --force"
            ) from exc
        self.step = int(payload["step"])

    def save(self) -> None:
        if self.run_dir is None or not self.comm.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT, self.state())
        write_json(self.run_dir / HISTORY, _history_json(self.config, self.sampler.history, self.sampler))

    # -- training ----------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, offset: int) -> Iterator[tuple[Tensor, Tensor]]:
        seed = _seed(self.config.seed, _ORDER, 0)
        batches = _index_batches(self.train_data, self.config.batch_size, seed, epoch, self.comm)
        loader_seed = _seed(self.config.seed, _ORDER, epoch)
        return iter(_loader(self.train_data, batches[offset: self.steps_per_epoch], self.config.num_workers,
                            loader_seed))

    def check(self, losses: Tensor, passes: Sequence[Tensor]) -> None:
        """Raise on the first non-finite loss of the step (``losses``: one per pass, averaged
        over ranks, so every rank raises together)."""
        bad = torch.nonzero(~torch.isfinite(losses)).flatten()
        if len(bad):
            first = int(bad[0])
            epoch, batch = divmod(self.step, self.steps_per_epoch)
            kept = f"; the last good checkpoint in {self.run_dir} is kept" if self.run_dir else ""
            raise NonFiniteLossError(
                f"non-finite loss ({float(losses[first])}) at step {self.step} (epoch {epoch + 1}, batch {batch + 1}) "
                f"with widths {_widths_text(passes[first])}; lower the learning rate (--lr) or check the data{kept}"
            )

    def score_local(self, W: Tensor, batches: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, int]:
        """Mean loss of each width vector on this rank's ``batches``, and their example count."""
        return score_widths(self.slim, W, batches, self.config.label_smoothing), sum(len(y) for _, y in batches)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        """One sandwich step; returns the full network's loss and the sampled vectors' cost ratios."""
        config, slim, space = self.config, self.slim, self.space
        lr = learning_rate(config, self.step, self.total_steps, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # Rank 0's sampler decides; its re-scoring of the history runs on every rank's shard.
        archs = self.comm.lead(lambda score: self.sampler.propose(self.step, score),
                               lambda W: self.score_local(W, [(x, y)]))
        slim.train()
        self.optimizer.zero_grad(set_to_none=True)
        passes = [space.full(), *archs, space.smallest()]
        slim.set_widths(passes[0].tolist())  # type: ignore[operator]
        logits = slim(x)
        loss = smoothed_ce(logits, y, config.label_smoothing)
        loss.backward()
        losses = [loss.detach()]
        target = logits.detach().softmax(dim=1)
        for widths in passes[1:]:
            slim.set_widths(widths.tolist())  # type: ignore[operator]
            distill = soft_ce(slim(x), target)
            distill.backward()
            losses.append(distill.detach())
        mean = self.comm.reduce_step(self.params, torch.stack(losses).double().cpu())
        self.check(mean, passes)
        self.optimizer.step()
        return float(mean[0]), space.ratio(archs) if len(archs) else archs.new_zeros(0)

    def run(self, progress: TrainProgress) -> None:
        progress.start_training(self.total_steps, self.step)
        with _StopRequest(self.comm.active) as stop:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                for x, y in self.epoch_batches(epoch, offset):
                    loss, ratios = self.train_step(x.to(self.device), y.to(self.device))
                    self.step += 1
                    progress.advance(self.step // self.steps_per_epoch + (self.step % self.steps_per_epoch > 0),
                                     self.config.epochs, loss, ratios)
                    if self.comm.any(stop.requested):  # every rank stops at the same step
                        self.save()
                        raise KeyboardInterrupt(f"stopped at step {self.step}; checkpoint written")
                self.save()


def _history_json(config: TrainConfig, history: History, sampler: Sampler | None = None) -> dict[str, Any]:
    return {"method": config.method, "cost": config.cost, "period": getattr(sampler, "period", None),
            "entries": [entry.to_dict() for entry in history.entries()]}


def _resolve_config(config: TrainConfig | None, payload: dict[str, Any] | None, path: Path | None) -> TrainConfig:
    if payload is None:
        return config or TrainConfig()
    try:
        stored = TrainConfig.from_dict(payload["config"])
    except (KeyError, TypeError, UserInputError) as exc:
        raise CheckpointError(f"{path} holds no valid training options ({exc}); start over with --force") from exc
    if config is not None and config != stored:
        ours, theirs = config.to_dict(), stored.to_dict()
        diff = ", ".join(f"{k}={ours[k]!r} (run has {theirs[k]!r})" for k in ours if ours[k] != theirs[k])
        raise UserInputError(
            f"cannot resume {path}: options differ from the stored run: {diff}; resume with the run's "
            "options, or start over with --force"
        )
    return stored


def _front_csv(front: Sequence[FrontPoint], uniform: Sequence[FrontPoint]) -> bytes:
    lines = ["kind,cost,cost_ratio,train_loss,val_acc,test_acc,channels,widths"]
    for kind, points in (("front", front), ("uniform", uniform)):
        for p in points:
            test = "" if p.test_acc is None else f"{p.test_acc:.6f}"
            lines.append(
                f"{kind},{p.cost:.6g},{p.cost_ratio:.6f},{p.train_loss:.6f},{p.val_acc:.6f},{test},"
                f"{' '.join(map(str, p.channels))},{' '.join(f'{w:.4f}' for w in p.widths)}"
            )
    return ("\n".join(lines) + "\n").encode()


def _prepare_run_dir(run_dir: Path | None, resume: bool, force: bool) -> dict[str, Any] | None:
    """Check the run directory and load its checkpoint when resuming."""
    if run_dir is None:
        if resume:
            raise UserInputError("resume needs the run directory of the interrupted run")
        return None
    if run_dir.exists() and not run_dir.is_dir():
        raise UserInputError(f"{run_dir} exists and is not a directory; choose another output directory")
    checkpoint = run_dir / CHECKPOINT
    if resume:
        return load_checkpoint(checkpoint) if checkpoint.exists() else None
    if checkpoint.exists() and not force:
        raise UserInputError(
            f"{run_dir} already holds a training run; resume it (--resume), start over (--force) "
            "or choose another output directory"
        )
    for name in (CHECKPOINT, HISTORY, FRONT_JSON, FRONT_CSV):  # start over: no stale results
        (run_dir / name).unlink(missing_ok=True)
    return None


def train(
    slim: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    test_data: Dataset | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
    model_name: str | None = None,
) -> TrainResult:
    """Train a slimmable model with PareCO (or a baseline) and build its Pareto front.

    Args:
        slim: a ``SlimmableModel`` (``pareco_fx.make_slimmable``); trained in place.
        train_data: training examples ``(input, int label)``.
        val_data: validation examples, used to select the front.
        test_data: test examples, only reported.
        config: the options; ``None`` means the defaults, or the stored options when resuming.
        run_dir: directory for ``config.json``, ``checkpoint.pt`` (every epoch, atomic),
            ``history.json``, ``front.json`` and ``front.csv``; ``None`` writes nothing.
        resume: continue the run in ``run_dir`` from its checkpoint (a fresh start if it has
            none yet); the result equals an uninterrupted run with the same seed.
        progress: draw progress bars on stderr.
        force: overwrite a run directory that already holds a checkpoint.
        model_name: name recorded in ``front.json`` (default: the model's class name).

    Under ``torch.distributed`` (call it on every rank of an initialised process group, e.g.
    under ``torchrun``) the ranks share each global batch of ``config.batch_size`` examples,
    average their gradients, train the width vectors rank 0 decides, and reduce BN statistics
    and accuracies; only rank 0 writes ``run_dir`` and draws progress. Every rank returns the
    same result. See :mod:`pareco_fx.optim.distributed`.

    Returns:
        The front, the uniform-width comparison points, the history and the configuration.

    Raises:
        UserInputError: bad options, or a run directory that would be overwritten.
        CheckpointError: the checkpoint to resume is truncated, foreign, or of another model.
        NonFiniteLossError: a loss became NaN/inf (the last epoch's checkpoint stays).
        KeyboardInterrupt: on Ctrl-C, after writing a checkpoint at the step boundary.
    """
    comm = Comm.current()
    path = Path(run_dir) if run_dir is not None else None
    # Rank 0 reads the run directory and hands its checkpoint (or its error) to every rank, so
    # no other rank needs the directory: a shared file system is not required.
    payload = comm.on_main(lambda: _prepare_run_dir(path, resume, force))
    config = _resolve_config(config, payload, path)
    trainer = _Trainer(slim, train_data, config, path, comm)
    if payload is not None:
        trainer.restore(payload, path / CHECKPOINT)  # type: ignore[operator]
    else:
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
    comm.sync_module(slim)  # every rank starts from rank 0's weights
    if path is not None and comm.is_main:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / CONFIG, config.to_dict())
    with TrainProgress(progress and comm.is_main) as bars:
        trainer.run(bars)
        history, front, uniform = _build_front(trainer, val_data, test_data, bars)
    inner = getattr(slim, "model", None)
    name = model_name or type(inner if isinstance(inner, nn.Module) else slim).__name__
    result = TrainResult(front, uniform, history.entries(), config, path, trainer.space.cost_full, bars.seconds)
    if path is not None and comm.is_main:
        _write_results(path, result, trainer, history, name)
    comm.barrier()  # the run directory is complete when train() returns on any rank
    return result


def _build_front(
    trainer: _Trainer, val_data: Dataset, test_data: Dataset | None, bars: TrainProgress
) -> tuple[History, tuple[FrontPoint, ...], tuple[FrontPoint, ...]]:
    config, slim, space, comm = trainer.config, trainer.slim, trainer.space, trainer.comm
    seed = _seed(config.seed, _RECAL, 0)
    recal_sets = _index_batches(trainer.train_data, config.batch_size, seed, 0, comm)
    recal = _to(_loader(trainer.train_data, recal_sets[: config.recal_batches], config.num_workers, seed),
                trainer.device)
    val = _eval_batches(val_data, config, comm, trainer.device)
    test = _eval_batches(test_data, config, comm, trainer.device)

    def score_search(W: Tensor) -> tuple[Tensor, int]:
        return trainer.score_local(W, recal[:SEARCH_BATCHES])

    def score_all(W: Tensor) -> tuple[Tensor, int]:
        return trainer.score_local(W, recal)

    def search(score: Callable[[Tensor], Tensor]) -> Tensor:
        bars.start("search", config.twostage_evals)
        found = bayesian_search(space, score, config, trainer.sampler.generator, config.twostage_evals,
                                on_batch=bars.update)
        return _pack(found)

    def rescore(score: Callable[[Tensor], Tensor]) -> Tensor:
        history = trainer.sampler.history  # rank 0's: the other ranks' samplers never decide
        bars.start("re-score", 1)
        history.losses = score(history.widths).double()
        bars.advance_one()
        if config.front_fill:
            fill(history, score)
        return _pack(history)

    def fill(history: History, score: Callable[[Tensor], Tensor]) -> None:
        # Scored on the re-score's batches, so the peeling compares like with like; targets go
        # where the front has gaps whatever the training's targets were: filling them is the point.
        start = len(history)
        bars.start("fill", config.front_fill)
        extend_search(space, history, score, config.replace(pareto_aware=True), trainer.sampler.generator,
                      config.front_fill, batch=FILL_BATCH, step=trainer.total_steps,
                      on_batch=lambda length: bars.update(length - start))

    if config.method == "slim":
        history = History(space.num_groups)
    else:
        history = _unpack(comm.lead(search, score_search) if config.method == "twostage"
                          else comm.lead(rescore, score_all))

    def loss_fn(logits: Tensor, labels: Tensor) -> Tensor:
        return smoothed_ce(logits, labels, config.label_smoothing)

    uniform_W = distinct_widths(slim, uniform_widths(space, config.slim_eval_points))
    candidates = None if config.method == "slim" else distinct_widths(slim, _candidates(history, trainer))
    bars.start("front", len(uniform_W) + (0 if candidates is None else len(candidates)))
    uniform = tuple(evaluate_widths(slim, uniform_W, space, recal, val, test, loss_fn, bars.advance_one, comm))
    if candidates is None:
        return history, select_front(uniform), uniform
    selected = select_front(evaluate_widths(slim, candidates, space, recal, val, None, loss_fn, bars.advance_one,
                                            comm))
    if test is not None:
        bars.start("test", len(selected))
    return history, add_test_accuracy(slim, selected, recal, test, bars.advance_one, comm), uniform


def _candidates(history: History, trainer: _Trainer) -> Tensor:
    """The front's candidates: peeled layers of the searched history, plus every vector of
    PareCO's front fill (proposed after the last step), so the fill only ever adds candidates."""
    config = trainer.config
    fill = history.steps >= trainer.total_steps
    if config.method != "pareco":  # twostage's steps count its search's evaluations
        fill = torch.zeros_like(fill)
    peeled = front_candidates(history.select(~fill), trainer.space, config.front_coverage)
    return torch.cat([peeled, history.widths[fill]])


def _pack(history: History) -> Tensor:
    """A history as one ``[N, G + 3]`` float64 tensor (widths, ratio, loss, step), to broadcast."""
    return torch.cat([history.widths, history.ratios[:, None], history.losses[:, None],
                      history.steps[:, None].double()], dim=1)


def _unpack(packed: Tensor) -> History:
    history = History(packed.shape[1] - 3)
    history.load_state_dict({"widths": packed[:, :-3], "ratios": packed[:, -3], "losses": packed[:, -2],
                             "steps": packed[:, -1].round().long()})
    return history


def _write_results(path: Path, result: TrainResult, trainer: _Trainer, history: History, name: str) -> None:
    slim, space = trainer.slim, trainer.space
    groups = [{"id": g.id, "channels": g.channels, "slimmable": g.slimmable}
              for g in slim.groups]  # type: ignore[attr-defined]
    write_json(path / HISTORY, _history_json(result.config, history, trainer.sampler))
    write_json(path / FRONT_JSON, {
        "model": name,
        "cost": result.config.cost,
        "method": result.config.method,
        "cost_full": space.cost_full,
        "cost_min": space.cost_min,
        "min_width": float(getattr(slim, "min_width", space.min_width)),
        "divisor": getattr(slim, "divisor", 1),
        "groups": groups,
        "points": [p.to_dict() for p in result.front],
        "uniform": [p.to_dict() for p in result.uniform],
    })
    write_atomic(path / FRONT_CSV, _front_csv(result.front, result.uniform))
