"""PareCO training: width samplers, the sandwich trainer, BN recalibration and the front.

Usage::

    from pareco_fx.optim import TrainConfig, train
    result = train(slim, train_data, val_data, test_data, TrainConfig(cost="memory"), run_dir="runs/x")
    for point in result.front:
        print(point.cost_ratio, point.val_acc, point.test_acc)
"""
from __future__ import annotations

from pareco_fx.optim.bn import recalibrate_bn
from pareco_fx.optim.checkpoint import load_checkpoint, load_weights
from pareco_fx.optim.config import METHODS, TrainConfig
from pareco_fx.optim.front import FrontPoint, select_front, uniform_widths
from pareco_fx.optim.history import History, HistoryEntry
from pareco_fx.optim.pareto import non_dominated, pareto_layers
from pareco_fx.optim.samplers import ParecoSampler, Sampler, SlimSampler, TwoStageSampler, make_sampler
from pareco_fx.optim.search import ChebyshevSearch, LossModel, bayesian_search
from pareco_fx.optim.space import WidthSpace
from pareco_fx.optim.trainer import NonFiniteLossError, TrainResult, learning_rate, train

__all__ = [
    "METHODS",
    "ChebyshevSearch",
    "FrontPoint",
    "History",
    "HistoryEntry",
    "LossModel",
    "NonFiniteLossError",
    "ParecoSampler",
    "Sampler",
    "SlimSampler",
    "TrainConfig",
    "TrainResult",
    "TwoStageSampler",
    "WidthSpace",
    "bayesian_search",
    "learning_rate",
    "load_checkpoint",
    "load_weights",
    "make_sampler",
    "non_dominated",
    "pareto_layers",
    "recalibrate_bn",
    "select_front",
    "train",
    "uniform_widths",
]
