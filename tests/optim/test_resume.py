"""Crash safety: Ctrl-C and SIGKILL mid-run, then resume, give exactly the uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optim_helpers import TINY_CONFIG, tiny_data, tiny_slim
from pareco_fx.errors import CheckpointError, UserInputError
from pareco_fx.optim import TrainResult, load_checkpoint, train
from pareco_fx.optim import trainer as trainer_module

CONFIG = TINY_CONFIG.replace(epochs=3)  # 12 steps, pareco re-samples every 2


def _run(run_dir: Path, **kwargs) -> TrainResult:
    train_set, val_set, test_set = tiny_data()
    return train(tiny_slim(), train_set, val_set, test_set, CONFIG, run_dir=run_dir, progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[TrainResult, dict]:
    run_dir = tmp_path_factory.mktemp("reference")
    result = _run(run_dir)
    return result, load_checkpoint(run_dir / "checkpoint.pt")


def _assert_same_run(result: TrainResult, run_dir: Path, reference: tuple[TrainResult, dict]) -> None:
    expected, expected_ckpt = reference
    assert result.history == expected.history
    assert result.front == expected.front and result.uniform == expected.uniform
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["step"] == expected_ckpt["step"] == 12
    assert ckpt["model"].keys() == expected_ckpt["model"].keys()
    for name, tensor in expected_ckpt["model"].items():
        assert torch.equal(ckpt["model"][name], tensor), name
    assert torch.equal(ckpt["sampler"]["history"]["widths"], expected_ckpt["sampler"]["history"]["widths"])


def test_ctrl_c_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch, reference) -> None:
    original = trainer_module._Trainer.train_step

    def step_then_interrupt(self, x, y):
        out = original(self, x, y)
        if self.step == 5:  # the 6th step, inside epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(trainer_module._Trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 6"):
        _run(tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
    monkeypatch.undo()
    _assert_same_run(_run(tmp_path, resume=True), tmp_path, reference)


CHILD = """
import sys, torch
sys.path.insert(0, {helpers!r})
torch.set_num_threads({threads})
from optim_helpers import SlowData, tiny_data, tiny_slim
from pareco_fx.optim import TrainConfig, train
train_set, val_set, test_set = tiny_data()
config = TrainConfig.from_dict({config!r})
train(tiny_slim(), SlowData(train_set, 0.01), val_set, test_set, config, run_dir={run_dir!r}, progress=False)
"""


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, reference) -> None:
    code = CHILD.format(helpers=str(Path(__file__).parent), threads=torch.get_num_threads(),
                        config=CONFIG.to_dict(), run_dir=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code])
    checkpoint = tmp_path / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    step = load_checkpoint(checkpoint)["step"]
    assert 4 <= step < 12 and not (tmp_path / "front.json").exists()
    _assert_same_run(_run(tmp_path, resume=True), tmp_path, reference)


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path, reference) -> None:
    good = (reference[0].run_dir / "checkpoint.pt").read_bytes()
    for content, message in ((good[: len(good) // 2], "truncated or not a pareco-fx checkpoint"),
                             (b"\x00garbage", "truncated or not a pareco-fx checkpoint")):
        (tmp_path / "checkpoint.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            _run(tmp_path, resume=True)
    torch.save({"state_dict": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a pareco-fx checkpoint"):
        _run(tmp_path, resume=True)


def test_resume_with_other_options_is_refused(tmp_path, reference) -> None:
    (tmp_path / "checkpoint.pt").write_bytes((reference[0].run_dir / "checkpoint.pt").read_bytes())
    train_set, val_set, _ = tiny_data()
    with pytest.raises(UserInputError, match=r"epochs=4 \(run has 3\)"):
        train(tiny_slim(), train_set, val_set, None, CONFIG.replace(epochs=4), run_dir=tmp_path, resume=True,
              progress=False)


@pytest.mark.parametrize("distributed", [False, True])
def test_a_second_ctrl_c_interrupts_at_once_unless_it_is_torchruns_echo(distributed: bool) -> None:
    # Under torchrun a terminal's Ctrl-C reaches each worker twice (directly and forwarded).
    # The handlers in force before are restored after (SIG_IGN, not the default, when pytest runs
    # as a background job of a non-interactive shell).
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with trainer_module._StopRequest(distributed) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        if distributed:
            os.kill(os.getpid(), signal.SIGINT)  # the echo: still only a request
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun forwards SIGTERM: a request too
            stop._first -= trainer_module.SIGNAL_ECHO_S  # a real second Ctrl-C, later
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
