"""The sandwich trainer on a tiny slimmable CNN: learning, schedule, run-directory files, errors."""
from __future__ import annotations

import json
import time

import pytest
import torch

from optim_helpers import TINY_CONFIG, tiny_data, tiny_slim
from pareco_fx.errors import UserInputError
from pareco_fx.optim import NonFiniteLossError, TrainConfig, learning_rate, load_checkpoint, train
from pareco_fx.optim.evaluate import score_widths


def _fixed_batch(data, n: int = 64):
    xs, ys = zip(*(data[i] for i in range(n)))
    return [(torch.stack(xs), torch.tensor(ys))]


def test_training_lowers_loss_at_full_and_smallest_width() -> None:
    train_set, val_set, _ = tiny_data()
    slim = tiny_slim()
    batch = _fixed_batch(train_set)
    ends = torch.tensor([[1.0] * len(slim.groups), [0.42] * len(slim.groups)], dtype=torch.float64)
    before = score_widths(slim, ends, batch, 0.0)
    config = TINY_CONFIG.replace(method="slim", lr=0.8, epochs=2, max_train_batches=8, slim_eval_points=3)
    result = train(slim, train_set, val_set, None, config, progress=False)  # 16 steps
    after = score_widths(slim, ends, batch, 0.0)
    assert before.min() > 2.0
    assert torch.all(after < 0.5 * before), (before, after)
    # The slim front is made of the uniform multipliers (no history).
    assert set(result.front) <= set(result.uniform) and result.history == ()


def test_learning_rate_warmup_then_decay() -> None:
    config = TrainConfig(lr=0.1, batch_size=256, warmup_epochs=1.0)
    peak = 0.2  # lr scales with batch size / 128
    lrs = [learning_rate(config, step, total_steps=40, steps_per_epoch=10) for step in range(40)]
    assert lrs[:10] == pytest.approx([peak * (s + 1) / 10 for s in range(10)])
    assert lrs[10:] == pytest.approx([peak * (1 - s / 30) for s in range(30)])
    cosine = config.replace(schedule="cosine")
    assert learning_rate(cosine, 25, 40, 10) == pytest.approx(peak * 0.5)


def test_run_directory_files(tmp_path) -> None:
    train_set, val_set, test_set = tiny_data()
    config = TINY_CONFIG.replace(epochs=2)
    result = train(tiny_slim(), train_set, val_set, test_set, config, run_dir=tmp_path, progress=False,
                   model_name="tiny")
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "checkpoint.pt", "history.json", "front.json",
                                                   "front.csv"}
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    front = json.loads((tmp_path / "front.json").read_text())
    assert (front["model"], front["cost"], front["method"]) == ("tiny", "flops", "pareco")
    assert front["cost_full"] == pytest.approx(result.cost_full)
    assert [p["cost_ratio"] for p in front["points"]] == [p.cost_ratio for p in result.front]
    assert len(front["uniform"]) == len(result.uniform) >= 2
    # The front is non-dominated on validation accuracy, cheapest first, with test accuracy reported.
    ratios = [p.cost_ratio for p in result.front]
    accs = [p.val_acc for p in result.front]
    assert ratios == sorted(ratios) and accs == sorted(accs)
    assert all(p.test_acc is not None for p in result.front)
    assert result.uniform[0].cost_ratio == pytest.approx(min(p.cost_ratio for p in result.uniform))
    lines = (tmp_path / "front.csv").read_text().splitlines()
    assert lines[0].startswith("kind,cost,cost_ratio") and len(lines) == 1 + len(result.front) + len(result.uniform)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["entries"]) == len(result.history) == 2 * (2 * 4 // history["period"])
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["step"] == 8 and payload["config"] == config.to_dict()


def test_existing_run_is_not_overwritten(tmp_path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"anything")
    train_set, val_set, _ = tiny_data()
    with pytest.raises(UserInputError, match="already holds a training run"):
        train(tiny_slim(), train_set, val_set, None, TINY_CONFIG, run_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"anything"


class Poisoned(torch.utils.data.Dataset):
    """Wraps a dataset; once armed, every image is NaN."""

    def __init__(self, base) -> None:
        self.base, self.armed = base, False

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return (torch.full_like(x, float("nan")) if self.armed else x), y


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch) -> None:
    from pareco_fx.optim import trainer as trainer_module

    train_set, val_set, _ = tiny_data()
    poisoned = Poisoned(train_set)
    original_save = trainer_module._Trainer.save

    def save_then_arm(self) -> None:
        original_save(self)
        poisoned.armed = True

    monkeypatch.setattr(trainer_module._Trainer, "save", save_then_arm)
    with pytest.raises(NonFiniteLossError, match=r"step 4 \(epoch 2, batch 1\) with widths \[1\.000, 1\.000"):
        train(tiny_slim(), poisoned, val_set, None, TINY_CONFIG, run_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4
    assert not (tmp_path / "front.json").exists()


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserInputError, match="unknown method 'fast'"):
        TrainConfig(method="fast")
    with pytest.raises(UserInputError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(UserInputError, match="rescore_every must be at least 1"):
        TrainConfig(rescore_every=0)
    with pytest.raises(UserInputError, match="unknown training options bogus"):
        TrainConfig.from_dict({"bogus": 1})
    assert TrainConfig.from_dict(TINY_CONFIG.to_dict()) == TINY_CONFIG
    train_set, val_set, _ = tiny_data(train=16)
    with pytest.raises(UserInputError, match="fewer than one batch"):
        train(tiny_slim(), train_set, val_set, None, TINY_CONFIG, progress=False)


def test_twostage_searches_the_frozen_weights() -> None:
    train_set, val_set, _ = tiny_data()
    slim = tiny_slim()
    result = train(slim, train_set, val_set, None, TINY_CONFIG.replace(method="twostage", epochs=1),
                   progress=False)
    weights = {name: p.detach().clone() for name, p in slim.named_parameters()}
    history = result.history
    assert len(history) == 12 and all(entry.loss is not None for entry in history)
    assert history[0].widths == (1.0,) * len(slim.groups) and history[0].cost_ratio == 1.0
    assert history[1].cost_ratio == pytest.approx(min(entry.cost_ratio for entry in history))
    ratios = [entry.cost_ratio for entry in history]
    assert max(ratios) - min(ratios) > 0.5
    # The search and the front evaluation touch BatchNorm statistics only, never the weights.
    assert all(torch.equal(p, weights[name]) for name, p in slim.named_parameters())
    assert len(result.front) >= 1


@pytest.mark.parametrize("method, phases", [("pareco", ["train", "re-score", "front", "test"]),
                                            ("twostage", ["train", "search", "front", "test"]),
                                            ("slim", ["train", "front"])])  # its front points are tested as evaluated
def test_result_times_each_phase(method, phases) -> None:
    train_set, val_set, test_set = tiny_data()
    t0 = time.perf_counter()
    result = train(tiny_slim(), train_set, val_set, test_set, TINY_CONFIG.replace(method=method, epochs=1),
                   progress=False)
    wall = time.perf_counter() - t0
    assert list(result.seconds) == phases
    assert all(s > 0 for s in result.seconds.values()) and sum(result.seconds.values()) < wall


def test_rank_shards_make_up_the_single_process_batches() -> None:
    from pareco_fx.optim import trainer as trainer_module
    from pareco_fx.optim.distributed import Comm

    data, _, _ = tiny_data(train=100)
    single = trainer_module._index_batches(data, 12, 5, 3, Comm())
    # one process: the order of a plain seeded permutation (as before distributed training)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(5 + 3)).tolist()
    assert single == [order[i: i + 12] for i in range(0, 89, 12)]
    for world in (2, 3, 4):
        shards = [trainer_module._index_batches(data, 12, 5, 3, Comm(rank, world)) for rank in range(world)]
        for i, batch in enumerate(single):
            parts = [shard[i] for shard in shards]
            assert all(len(part) == 12 // world for part in parts)
            assert sorted(sum(parts, [])) == sorted(batch)


def test_scoring_uses_batch_statistics_and_leaves_running_statistics_alone() -> None:
    # The re-scoring of the history is a train-mode (batch-statistics) forward; it must neither
    # read nor write the BatchNorm running statistics.
    train_set, _, _ = tiny_data()
    slim, batch = tiny_slim(), _fixed_batch(train_set)
    W = torch.tensor([[1.0] * len(slim.groups), [0.6] * len(slim.groups)], dtype=torch.float64)
    norms = [m for m in slim.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:  # running statistics far from the batch's: any use of them would show
        m.running_mean.fill_(5.0)
        m.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in slim.state_dict().items()}
    torch.manual_seed(0)  # the tiny CNN's dropout: the same draws for the reference below
    losses = score_widths(slim, W, batch, 0.1)
    assert all(torch.equal(v, before[k]) for k, v in slim.state_dict().items())
    assert all(m.track_running_stats for m in norms)
    expected = []
    torch.manual_seed(0)
    for widths in W:
        slim.set_widths(widths.tolist())
        with torch.no_grad():
            expected.append(float(torch.nn.functional.cross_entropy(slim(batch[0][0]), batch[0][1],
                                                                      label_smoothing=0.1)))
    assert losses.tolist() == expected


def test_scoring_runs_each_network_once() -> None:
    # Width vectors that round to the same channel counts are one network: scored once, the
    # same loss for each, and the distinct ones as if scored alone (same dropout draws).
    train_set, _, _ = tiny_data()
    slim, batch = tiny_slim(), _fixed_batch(train_set)
    G = len(slim.groups)
    W = torch.tensor([[1.0] * G, [0.6] * G, [1.0] * G, [0.61] * G], dtype=torch.float64)
    channels = []
    for widths in W[[1, 3]]:
        slim.set_widths(widths.tolist())
        channels.append(slim.channels())
    assert channels[0] == channels[1]  # 0.6 and 0.61 round to the same channels
    forwards = []
    hook = slim.register_forward_hook(lambda *_: forwards.append(1))
    torch.manual_seed(0)
    losses = score_widths(slim, W, batch, 0.1)
    hook.remove()
    torch.manual_seed(0)
    distinct = score_widths(slim, W[:2], batch, 0.1)
    assert len(forwards) == 2
    assert losses.tolist() == [*distinct.tolist(), *distinct.tolist()]


@pytest.mark.parametrize("method, batches", [("pareco", 3), ("twostage", 2)])
def test_after_training_vectors_are_scored_on(method, batches, monkeypatch) -> None:
    # PareCO's final re-score ranks the front's candidates on every recalibration batch (on two,
    # near-tied vectors rank by noise); twostage's search scores each vector on two, as the reference.
    from pareco_fx.optim import trainer as trainer_module

    calls: list[tuple[int, int]] = []
    original = trainer_module._Trainer.score_local

    def spy(self, W, data):
        calls.append((self.step, len(data)))
        return original(self, W, data)

    monkeypatch.setattr(trainer_module._Trainer, "score_local", spy)
    train_set, val_set, _ = tiny_data()
    train(tiny_slim(), train_set, val_set, None, TINY_CONFIG.replace(method=method, epochs=1, recal_batches=3),
          progress=False)
    steps = max(step for step, _ in calls)
    after = [n for step, n in calls if step == steps]
    assert after and set(after) == {batches}
    assert all(n == 1 for step, n in calls if step < steps)  # the periodic re-scores: the training batch


def test_front_fill_adds_scored_vectors_and_only_improves_the_front() -> None:
    # The fill searches the trained weights: training is untouched, the history gains front_fill
    # vectors proposed after the last step, and the front can only gain (its candidates are a superset).
    train_set, val_set, _ = tiny_data()
    config = TINY_CONFIG.replace(epochs=1, num_width_vectors=6, prior_points=3)
    plain = train(tiny_slim(), train_set, val_set, None, config, progress=False)
    slim = tiny_slim()
    filled = train(slim, train_set, val_set, None, config.replace(front_fill=5), progress=False)
    assert list(filled.seconds) == ["train", "re-score", "fill", "front"]
    assert filled.history[: len(plain.history)] == plain.history
    extra = filled.history[len(plain.history):]
    last_step = max(entry.step for entry in plain.history)
    assert len(extra) == 5 and all(e.loss is not None and e.step > last_step and 0 < e.cost_ratio <= 1
                                   for e in extra)
    for point in plain.front:
        assert any(p.val_acc >= point.val_acc and p.cost_ratio <= point.cost_ratio for p in filled.front), point


def test_front_fill_is_a_non_negative_pareco_option() -> None:
    with pytest.raises(UserInputError, match="front_fill"):
        TrainConfig(front_fill=-1)
    with pytest.raises(UserInputError, match="front_fill applies to pareco only"):
        TrainConfig(method="slim", front_fill=5)
