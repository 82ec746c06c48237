"""FSDP under torchrun (two CPU processes, gloo): the same run as one process, and whole checkpoints that
resume across strategies and process counts.

Tolerance 1e-5 (absolute, fp32) on losses, gradient norms and weights: the processes sum their halves of
each gradient (reduce-scatter) where one process sums the whole batch at once, so the float32 rounding
differs at ~1e-7 relative per step; over 4 AdamW steps (lr 1e-2, eps 1e-4, which keeps Adam from turning
rounding noise in ~0 gradients into lr-sized steps) that stays below 1e-5 (measured: at most 2e-7), while a
wrong update moves them by more (resuming without the AdamW state: 1.6e-3 on the loss of step 4; an
unaveraged gradient doubles the gradient norm).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmblocks.files import read_tensors
from fmblocks.training.checkpoint import MODEL_FILE, OPTIMIZER_FILE, read_state
from fmblocks.training.fsdp import by_index, by_name

WORKER = Path(__file__).with_name("fsdp_worker.py")
_spec = importlib.util.spec_from_file_location("fsdp_worker", WORKER)
fsdp_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fsdp_worker)
TOLERANCE = 1e-5


def same_rows(ours: list[dict], theirs: list[dict], first: int = 1) -> None:
    """History rows from step `first` on agree within the tolerance."""
    ours, theirs = [r for r in ours if r["step"] >= first], [r for r in theirs if r["step"] >= first]
    assert [r["step"] for r in theirs] == [r["step"] for r in ours]
    for mine, other in zip(ours, theirs):
        assert other["lr"] == mine["lr"]
        for key in ("train_loss", "grad_norm", "eval_loss"):
            assert (other[key] is None) == (mine[key] is None), key
            if mine[key] is not None:
                assert abs(other[key] - mine[key]) < TOLERANCE, (key, mine["step"], mine[key], other[key])


def same_weights(one: Path, two: Path) -> None:
    for file in (MODEL_FILE, OPTIMIZER_FILE):
        ours, theirs = read_tensors(one / "checkpoint" / file), read_tensors(two / "checkpoint" / file)
        assert ours.keys() == theirs.keys(), file
        for name in ours:
            assert theirs[name].dtype == ours[name].dtype
            torch.testing.assert_close(theirs[name], ours[name], atol=TOLERANCE, rtol=0)


def test_fsdp_trains_like_one_process_and_its_checkpoints_resume_anywhere(tmp_path: Path) -> None:
    half = fsdp_worker.trainer(tmp_path / "one-at-2")
    half.fit(stop_at=2)  # the 1-process checkpoint at step 2 the FSDP processes resume
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path)]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        whole = fsdp_worker.trainer(tmp_path / "one").fit()  # uninterrupted, 1 process, while torchrun starts
        resumed = fsdp_worker.trainer(tmp_path / "one-resumed")
        output, _ = run.communicate(timeout=120)
    assert run.returncode == 0, output[-3000:]
    assert len({round(row["train_loss"], 3) for row in whole}) == 4  # the steps change the model

    fsdp = read_state(tmp_path / "fsdp")
    assert fsdp["world_size"] == 2 and fsdp["step"] == 4 and fsdp["train_config"]["strategy"] == "fsdp"
    same_rows(whole, fsdp["history"])  # FSDP (+ activation checkpointing) = 1 process
    same_weights(tmp_path / "one", tmp_path / "fsdp")  # whole checkpoints, the layout of a 1-process run
    assert "lm_head.weight" not in read_tensors(tmp_path / "fsdp" / "checkpoint" / MODEL_FILE)  # tied: stored once

    resumed.resume(tmp_path / "fsdp-at-2")  # 2-process FSDP -> 1 process
    same_rows(whole, resumed.fit(), first=3)
    for name in ("one-then-fsdp", "fsdp-then-ddp"):  # 1 process -> 2-process FSDP; FSDP -> DDP
        state = read_state(tmp_path / name)
        assert state["world_size"] == 2 and state["step"] == 4
        same_rows(whole, state["history"], first=3)
        same_weights(tmp_path / "one", tmp_path / name)


def test_optimizer_state_renaming_round_trips() -> None:
    by_names = {"state": {"w": {"step": 2}, "b": {"step": 2}},
                "param_groups": [{"lr": 0.1, "params": ["w"]}, {"lr": 0.1, "params": ["v", "b"]}]}
    by_indices = by_index(by_names)
    assert by_indices == {"state": {0: {"step": 2}, 2: {"step": 2}},
                          "param_groups": [{"lr": 0.1, "params": [0]}, {"lr": 0.1, "params": [1, 2]}]}
    assert by_name(by_indices, ["w", "v", "b"]) == by_names


def test_alone_fsdp_trains_the_plain_model(tmp_path: Path) -> None:
    trainer = fsdp_worker.trainer(tmp_path / "alone", strategy="fsdp")
    assert trainer.network is trainer.model and not trainer.sharded
    assert trainer.summary().strategy == "single process"


@pytest.mark.parametrize("strategy", ["zero", "FSDP"])
def test_unknown_strategies_are_refused(strategy: str) -> None:
    from fmblocks.errors import ConfigError
    from fmblocks.training import TrainConfig

    with pytest.raises(ConfigError, match="ddp, fsdp"):
        TrainConfig(strategy=strategy)
