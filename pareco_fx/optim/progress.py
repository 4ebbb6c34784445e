"""Rich progress bars on stderr for training, the twostage search and the front evaluation."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor

__all__ = ["TrainProgress"]


class TrainProgress:
    """Progress bars that do nothing when disabled, and the seconds spent in each phase.

    Training shows epoch, step, the full network's loss and the cost ratios of the widths being
    trained; later phases get one bar each. ``seconds`` maps each phase (the description it
    started with) to its wall time, timed whether or not bars are drawn.
    """

    def __init__(self, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task: TaskID | None = None
        self.seconds: dict[str, float] = {}
        self._phase: tuple[str, float] | None = None  # the running phase and when it began

    def __enter__(self) -> TrainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_phase()
        self._progress.stop()

    def start(self, description: str, total: int, completed: int = 0) -> None:
        """Begin a new phase (the previous bar stays visible)."""
        self._end_phase()
        self._phase = description, time.perf_counter()
        self._task = self._progress.add_task(description, total=total, completed=completed, info="")

    def _end_phase(self) -> None:
        if self._phase is not None:
            name, began = self._phase
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
            self._phase = None

    def start_training(self, total_steps: int, done: int) -> None:
        """Begin the training bar, possibly part-done (resume)."""
        self.start("train", total_steps, done)

    def advance(self, epoch: int, epochs: int, loss: float, ratios: Tensor) -> None:
        """One training step done."""
        cost = ",".join(f"{r:.2f}" for r in ratios.tolist())
        self._update(1, f"epoch {epoch}/{epochs}", f"loss {loss:.3f} cost [{cost}]")

    def advance_one(self) -> None:
        """One unit of the current phase done."""
        self._update(1)

    def update(self, completed: int) -> None:
        """Set the completed count of the current phase."""
        if self._task is not None:
            self._progress.update(self._task, completed=completed)

    def _update(self, advance: int, description: str | None = None, info: str | None = None) -> None:
        if self._task is None:
            return
        fields = {} if info is None else {"info": info}
        if description is not None:
            fields["description"] = description
        self._progress.update(self._task, advance=advance, **fields)
