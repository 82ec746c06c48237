"""A run directory survives careless use: one writer at a time, failed writes, signals, NaN, debris, umask."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from fmblocks import files
from fmblocks.errors import CheckpointError, NonFiniteError, RunLockedError, TrainingInterrupted, WriteError
from fmblocks.training import checkpoint as ckpt
from fmblocks.training import lock
from fmblocks.training.config import TrainConfig
from fmblocks.training.datasets import CausalLMWindows
from fmblocks.training.lock import run_lock
from fmblocks.training.trainer import Trainer

QUIET = {"progress": False}
SRC = str(Path(__file__).resolve().parents[2] / "src")
HOLD = "import sys, time; from fmblocks.training.lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
       "    print('locked', flush=True); time.sleep(60)"


def trainer(config, make_model, char_ids, out: Path, **overrides) -> Trainer:
    settings = {"steps": 4, "batch_size": 2, "log_every": 1, "eval_every": 0, **QUIET, **overrides}
    return Trainer(make_model(config), CausalLMWindows(char_ids, 16), config=TrainConfig(**settings), out_dir=out)


def test_a_locked_run_refuses_a_second_writer_and_a_killed_holder_is_taken_over(tmp_path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunLockedError, match=f"in use by another process \\(PID {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    assert (tmp_path / lock.LOCK_FILE).read_text().strip() == str(holder.pid)  # left behind
    with run_lock(tmp_path), run_lock(tmp_path):  # taken over; reentrant within a process
        assert (tmp_path / lock.LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (tmp_path / lock.LOCK_FILE).exists()


def test_taking_a_run_removes_temporaries_and_an_unused_new_directory(tmp_path) -> None:
    debris = [tmp_path / ".loss.png.1a2b3c4d.tmp", tmp_path / ".log.csv.deadbeef.tmp"]
    for path in debris:
        path.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("not ours")
    with run_lock(tmp_path):
        assert not any(path.exists() for path in debris)
    assert (tmp_path / "notes.tmp").exists()
    with run_lock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()


def test_an_unwritable_run_directory_fails_before_the_first_step(tiny_config, make_model, char_ids, tmp_path,
                                                                  monkeypatch) -> None:
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    run = trainer(tiny_config, make_model, char_ids, tmp_path / "run")
    monkeypatch.setattr(lock.os, "open", read_only)
    with pytest.raises(WriteError, match="is not writable \\(Read-only file system\\)"):
        run.fit()
    assert run.step == 0


def test_a_full_disk_keeps_the_last_good_checkpoint(tiny_config, make_model, char_ids, tmp_path, monkeypatch) -> None:
    run = trainer(tiny_config, make_model, char_ids, tmp_path, checkpoint_every=2)
    run.fit(stop_at=2)

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(files, "save_file", full)
    with pytest.raises(WriteError, match="cannot write .*model.safetensors: Error while serializing"):
        run.fit()
    assert ckpt.read_state(tmp_path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "log.csv", "loss.png"]  # no debris

    monkeypatch.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(WriteError, match="cannot write .*log.csv: the disk is full"):
        files.write_bytes(tmp_path / "log.csv", b"new")
    assert (tmp_path / "log.csv").read_text().startswith("step,lr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "log.csv", "loss.png"]


def test_files_and_directories_follow_the_umask(tiny_config, make_model, char_ids, tmp_path) -> None:
    previous = os.umask(0o027)
    try:
        trainer(tiny_config, make_model, char_ids, tmp_path / "run", steps=1).fit()
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    assert (run / "log.csv").stat().st_mode & 0o777 == 0o640
    assert (run / "checkpoint" / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (run / "checkpoint").stat().st_mode & 0o777 == 0o750


def test_a_fresh_run_never_replaces_an_existing_checkpoint(tiny_config, make_model, char_ids, tmp_path) -> None:
    trainer(tiny_config, make_model, char_ids, tmp_path, steps=1).fit()
    os.replace(tmp_path / "checkpoint", tmp_path / ".checkpoint.previous")  # a crash between the two renames
    with pytest.raises(CheckpointError, match=r"already holds a checkpoint \(.checkpoint.previous\); resume\(\) it"):
        trainer(tiny_config, make_model, char_ids, tmp_path, steps=2).fit()
    assert ckpt.read_state(tmp_path / ".checkpoint.previous")["step"] == 1
    resumed = trainer(tiny_config, make_model, char_ids, tmp_path, steps=2)
    resumed.resume()
    resumed.fit()
    assert ckpt.read_state(tmp_path)["step"] == 2 and not (tmp_path / ".checkpoint.previous").exists()


def test_resume_refuses_settings_that_change_the_updates(tiny_config, make_model, char_ids, tmp_path) -> None:
    trainer(tiny_config, make_model, char_ids, tmp_path, steps=2, lr=1e-3).fit()
    with pytest.raises(CheckpointError, match=r"lr: checkpoint 0.001, now 0.002"):
        trainer(tiny_config, make_model, char_ids, tmp_path, steps=2, lr=2e-3).resume()
    longer = trainer(tiny_config, make_model, char_ids, tmp_path, steps=3, lr=1e-3, log_every=3)
    longer.resume()  # the length and the logging may change
    assert longer.step == 2


class NaNAfter(torch.nn.Module):
    """The wrapped model, whose loss turns NaN from forward call `n` on."""

    def __init__(self, model: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, **batch):
        self.calls += 1
        output = self.model(**batch)
        if self.calls >= self.n:
            output.loss = output.loss * float("nan")
        return output


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_config, make_model, char_ids,
                                                                             tmp_path) -> None:
    model = NaNAfter(make_model(tiny_config), n=3)
    run = Trainer(model, CausalLMWindows(char_ids, 16), config=TrainConfig(
        steps=5, batch_size=2, checkpoint_every=2, log_every=1, eval_every=0, **QUIET), out_dir=tmp_path)
    with pytest.raises(NonFiniteError, match=r"step 3: the loss is nan .* the last checkpoint \(step 2\)"):
        run.fit()
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the update was not applied
    assert ckpt.read_state(tmp_path)["step"] == 2
    fresh = NaNAfter(make_model(tiny_config, seed=5), n=0)
    ckpt.load_weights(fresh, tmp_path)
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


class SignalAt(CausalLMWindows):
    """Windows that send this process SIGTERM when example `at` is read (in the middle of a step)."""

    at = 5

    def __getitem__(self, index: int):
        self.reads = getattr(self, "reads", 0) + 1
        if self.reads == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(index)


def test_sigterm_stops_at_the_step_boundary_with_a_checkpoint(tiny_config, make_model, char_ids, tmp_path,
                                                              capsys) -> None:
    run = Trainer(make_model(tiny_config), SignalAt(char_ids, 16), config=TrainConfig(
        steps=50, batch_size=2, eval_every=0, **QUIET), out_dir=tmp_path)
    started = time.perf_counter()
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after step 3 of 50; checkpoint saved") as stop:
        run.fit()
    assert time.perf_counter() - started < 30
    assert (stop.value.signal, stop.value.step) == (signal.SIGTERM, 3)
    assert ckpt.read_state(tmp_path)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert "SIGTERM: stopping after this step" in capsys.readouterr().err
