"""Multi-process training with ``torch.distributed`` (launched by ``torchrun``).

Every rank holds the whole model and a shard of each global batch. The design:

- gradients: after a step's 2 + M backward passes (sandwich), the summed ``.grad`` of every
  parameter is all-reduced once, in one flat buffer, and divided by the world size. DDP would
  need ``no_sync()`` for all but the last backward, wrap the model (``module.`` prefixes,
  ``set_widths`` through ``.module``) and broadcast BN buffers at every forward; its overlap of
  communication with computation would only ever hide the last of the 2 + M backward passes.
  The same buffer carries each pass's loss, so a non-finite loss on any rank stops every rank.
- decisions (width vectors, searches) run on rank 0 only (:meth:`Comm.lead`); the other ranks
  serve its scoring requests and receive the result by broadcast.
- BatchNorm recalibration runs on rank-sharded batches; the running means and variances are
  then averaged across ranks: close to one-process recalibration, not equal (the variances
  miss the spread of the shards' means, and layers after the first BN see inputs normalised
  with shard statistics), as with unsynchronised BN in training.
- only rank 0 touches the run directory (:meth:`Comm.on_main` shares its result or its error).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["Comm", "LocalScoreFn", "ScoreFn", "distributed_from_env"]

T = TypeVar("T")
ScoreFn = Callable[[Tensor], Tensor]
LocalScoreFn = Callable[[Tensor], tuple[Tensor, int]]  # W -> (this rank's mean losses, its example count)
_SCORE, _DONE = 1, 0  # kinds of the requests rank 0 sends while it decides


@dataclass(frozen=True)
class Comm:
    """This process's place in the process group; a single process when ``world_size`` is 1.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        device: where collectives run (CUDA for ``nccl``, else CPU).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def current(cls) -> Comm:
        """The initialised default process group, or a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        nccl = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def active(self) -> bool:
        """Whether there are other ranks to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes files, draws progress, decides widths."""
        return self.rank == 0

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's strided share of ``indices`` (the union over ranks is ``indices``)."""
        return list(indices[self.rank:: self.world_size])

    # -- collectives (no-ops in a single process) -----------------------------------------
    def sum(self, tensor: Tensor) -> Tensor:
        """Element-wise sum over ranks (a new tensor, on ``tensor``'s device and dtype)."""
        if not self.active:
            return tensor.clone()
        buffer = tensor.detach().to(self.device, copy=True)
        dist.all_reduce(buffer)
        return buffer.to(tensor.device, tensor.dtype)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on some rank."""
        return bool(self.sum(torch.tensor([float(flag)])) > 0)

    def broadcast(self, tensor: Tensor | None) -> Tensor:
        """Rank 0's ``tensor`` (float64, 1-d or 2-d) on every rank; other ranks pass ``None``."""
        if not self.active:
            assert tensor is not None
            return tensor
        shape = torch.zeros(3, dtype=torch.int64, device=self.device)
        if self.is_main:
            assert tensor is not None
            shape[0] = tensor.dim()
            shape[1: 1 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.int64)
        dist.broadcast(shape, 0)
        size = tuple(int(s) for s in shape[1: 1 + int(shape[0])].tolist())
        buffer = (tensor.to(self.device, torch.float64) if self.is_main
                  else torch.empty(size, dtype=torch.float64, device=self.device))
        if buffer.numel():
            dist.broadcast(buffer, 0)
        return buffer.cpu()

    def share(self, obj: T) -> T:
        """Rank 0's ``obj`` (any picklable value) on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, 0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.active:
            dist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only (file-system work) and return its result, or raise its
        error, on every rank: no rank waits for a failed one."""
        result: Any = None
        if self.is_main:
            try:
                result = (fn(), None)
            except Exception as exc:  # noqa: BLE001 -- re-raised on every rank below
                result = (None, exc)
        value, error = self.share(result)
        if error is not None:
            raise error
        return value  # type: ignore[no-any-return]

    # -- decisions on rank 0 ---------------------------------------------------------------
    def lead(self, decide: Callable[[ScoreFn], Tensor], score_local: LocalScoreFn) -> Tensor:
        """Run ``decide`` on rank 0 and broadcast the tensor (``[K, G]`` widths) it returns.

        ``decide`` gets a score function ``W -> mean loss per row`` over the examples of all
        ranks: each request goes out by broadcast, every rank scores its shard
        (``score_local`` gives the mean losses and the example count), and the count-weighted
        means are reduced.
        """
        if not self.active:
            return decide(lambda W: score_local(W)[0])
        if self.is_main:
            def score(W: Tensor) -> Tensor:
                self.broadcast(torch.tensor([float(_SCORE)]))
                return self._reduced_score(score_local, self.broadcast(W.double()))
            result = decide(score)
            self.broadcast(torch.tensor([float(_DONE)]))
            return self.broadcast(result.double())
        while int(self.broadcast(None)[0]) == _SCORE:
            self._reduced_score(score_local, self.broadcast(None))
        return self.broadcast(None)

    def _reduced_score(self, score_local: LocalScoreFn, W: Tensor) -> Tensor:
        means, count = score_local(W)
        total = self.sum(torch.cat([means.double() * count, torch.tensor([float(count)], dtype=torch.float64)]))
        return total[:-1] / total[-1]

    def sync_module(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (as DDP does when it wraps a model)."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                buffer = tensor.detach().to(self.device, copy=True)
                dist.broadcast(buffer, 0)
                tensor.copy_(buffer)

    # -- gradients and BatchNorm -----------------------------------------------------------
    def reduce_step(self, params: Sequence[nn.Parameter], losses: Tensor) -> Tensor:
        """Average the gradients of ``params`` and the step's ``losses`` over ranks, in one
        all-reduce of one flat buffer; returns the averaged losses."""
        if not self.active:
            return losses
        grads = [p.grad for p in params if p.grad is not None]
        dtype = torch.promote_types(grads[0].dtype, torch.float32) if grads else losses.dtype  # losses stay exact
        flat = torch.cat([g.reshape(-1).to(self.device, dtype) for g in grads] + [losses.to(self.device, dtype)])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat[offset:].to(losses.device, losses.dtype)

    def average_bn_stats(self, model: nn.Module) -> None:
        """Average every BatchNorm's running mean and variance over ranks."""
        if not self.active:
            return
        stats = [buf for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None
                 for buf in (m.running_mean, m.running_var)]
        if not stats:
            return
        flat = self.sum(torch.cat([s.reshape(-1) for s in stats])) / self.world_size
        offset = 0
        for s in stats:
            s.copy_(flat[offset: offset + s.numel()].view_as(s))
            offset += s.numel()


@contextlib.contextmanager
def distributed_from_env() -> Iterator[Comm]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and leave it on exit.

    ``nccl`` with one GPU per local rank when CUDA is available, else ``gloo``. Without those
    variables, or inside a group initialised by the caller, nothing is set up or torn down.
    """
    if "WORLD_SIZE" not in os.environ or not dist.is_available() or dist.is_initialized():
        yield Comm.current()
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Comm.current()
    finally:
        dist.destroy_process_group()
