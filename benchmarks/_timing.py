"""Timing helpers shared by the benchmarks: warm-ups, interleaved medians, machine facts.

On a shared machine the load changes while a benchmark runs; timing the contenders in turns,
round after round, exposes them to the same load, so their ratio stays meaningful even when the
absolute times do not.
"""
from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch

__all__ = ["LOADED", "Timing", "interleaved", "load_average", "machine_info", "timed"]

LOADED = 3.0  # a 1-minute load average at or above this marks figures as taken under load


@dataclass(frozen=True)
class Timing:
    """Seconds of repeated runs of one callable.

    Attributes:
        median_s: median over the timed runs.
        min_s: fastest timed run.
        runs: number of timed runs (warm-ups excluded).
    """

    median_s: float
    min_s: float
    runs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call, after a garbage collection so that none runs inside it."""
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Median seconds of every callable, all of them taking turns in each round.

    Args:
        fns: name -> callable without arguments.
        repeats: timed rounds.
        warmup: untimed rounds first (lazy initialisation, allocator and cache warm-up).
    """
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            elapsed, _ = timed(fn)
            if round_ >= warmup:
                seconds[name].append(elapsed)
    return {name: Timing(statistics.median(s), min(s), len(s)) for name, s in seconds.items()}


def load_average() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_info() -> dict[str, object]:
    """Cores, threads, CPU, library versions, date and load: what a timing depends on."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("torch", "torchvision", "torch-pruning", "thop", "pareco-fx")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
