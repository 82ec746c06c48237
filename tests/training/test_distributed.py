"""torchrun: two CPU processes (gloo) train like one process with the same global batch."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

from fmblocks.files import read_tensors
from fmblocks.training.checkpoint import read_state

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_torchrun_matches_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path / "two")]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as two:
        spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
        worker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(worker)
        history = worker.run(str(tmp_path / "one"))  # the one-process run, while torchrun starts up
        output, _ = two.communicate(timeout=120)
    assert two.returncode == 0, output[-3000:]

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint", "log.csv", "loss.png"]
    state = read_state(tmp_path / "two")
    assert state["world_size"] == 2 and state["step"] == 4
    for ours, theirs in zip(history, state["history"], strict=True):
        assert theirs["step"] == ours["step"] and theirs["lr"] == ours["lr"]
        assert abs(theirs["train_loss"] - ours["train_loss"]) < 1e-5
        assert (theirs["eval_loss"] is None) == (ours["eval_loss"] is None)
        if ours["eval_loss"] is not None:
            assert abs(theirs["eval_loss"] - ours["eval_loss"]) < 1e-5
    one = read_tensors(tmp_path / "one" / "checkpoint" / "model.safetensors")
    two = read_tensors(tmp_path / "two" / "checkpoint" / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=0)
