"""Trainer: overfits, resumes bit for bit, accumulates exactly, decays only matrices, refuses bad data."""

import csv

import pytest
import torch

from fmblocks.errors import CheckpointError, ConfigError, DataError
from fmblocks.training.config import TrainConfig
from fmblocks.training.datasets import CausalLMWindows, DictDataset
from fmblocks.training.trainer import Trainer, build_optimizer

QUIET = {"progress": False}


def curve(history: list[dict]) -> list[tuple]:
    """The deterministic columns of the history (tokens/s is wall-clock)."""
    return [(r["step"], r["lr"], r["train_loss"], r["eval_loss"], r["grad_norm"]) for r in history]


def test_tiny_decoder_overfits_a_small_corpus(tiny_config, make_model, char_ids, tmp_path) -> None:
    config = TrainConfig(steps=100, batch_size=8, lr=1e-2, warmup_steps=10, weight_decay=0.0, log_every=10,
                         eval_every=0, **QUIET)
    history = Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 32, stride=4), config=config,
                      out_dir=tmp_path).fit()
    # uniform guessing over the 30 characters costs ln 30 = 3.4 nats; the corpus repeats, so it can be memorised
    assert history[0]["train_loss"] > 2.5
    assert history[-1]["train_loss"] < 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "log.csv", "loss.png"]
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(10, 101, 10))
    assert list(rows[0]) == ["step", "lr", "train_loss", "eval_loss", "grad_norm", "tokens_per_s"]
    assert float(rows[-1]["train_loss"]) == pytest.approx(history[-1]["train_loss"])
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_and_resumed_run_reproduces_the_uninterrupted_curve(tiny_config, make_model, char_ids, tmp_path) -> None:
    config = TrainConfig(steps=10, batch_size=4, lr=3e-3, warmup_steps=3, log_every=1, eval_every=4, eval_batches=2,
                         **QUIET)
    model_config = tiny_config.replace(dropout=0.1)  # dropout draws from the RNG, which must be restored too
    train, held_out = CausalLMWindows(char_ids[:200], 16), CausalLMWindows(char_ids[200:], 16)

    def trainer(out: str) -> Trainer:
        return Trainer(make_model(model_config), train, config=config, eval_data=held_out, out_dir=tmp_path / out)

    whole = trainer("whole")
    expected = curve(whole.fit())
    trainer("parts").fit(stop_at=4)
    torch.manual_seed(123)  # a fresh process: other RNG state, other initial weights
    resumed = Trainer(make_model(model_config, seed=9), train, config=config, eval_data=held_out,
                      out_dir=tmp_path / "parts")
    resumed.resume()
    assert resumed.step == 4
    assert curve(resumed.fit()) == expected
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_resume_refuses_a_checkpoint_of_another_config(tiny_config, make_model, char_ids, tmp_path) -> None:
    config = TrainConfig(steps=1, batch_size=2, **QUIET)
    Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 16), config=config, out_dir=tmp_path).fit()
    other = Trainer(make_model(tiny_config.replace(d_model=64)), CausalLMWindows(char_ids, 16), config=config)
    with pytest.raises(CheckpointError, match="another model config: d_model: checkpoint 32, model 64"):
        other.resume(tmp_path)


def test_accumulated_micro_batches_equal_one_big_batch(tiny_config, make_model, char_ids) -> None:
    # targets with uneven numbers of ignored positions: micro-batches must be weighted by their targets.
    # eps=1e-4 keeps Adam from blowing float noise up to lr-sized steps where the gradient is ~0 (key biases).
    windows = CausalLMWindows(char_ids, 16, stride=8)
    rows = [windows[i] for i in range(len(windows))]
    targets = torch.stack([r["targets"] for r in rows])  # (N, 16)
    targets[torch.rand(targets.shape, generator=torch.Generator().manual_seed(0)) < 0.4] = -100
    data = DictDataset(input_ids=torch.stack([r["input_ids"] for r in rows]), targets=targets)
    runs = []
    for batch_size, accum in ((8, 1), (4, 2), (2, 4)):
        config = TrainConfig(steps=3, batch_size=batch_size, grad_accum=accum, lr=1e-2, warmup_steps=1, log_every=1,
                             eps=1e-4, **QUIET)
        trainer = Trainer(make_model(tiny_config), data, config=config)
        runs.append((trainer.fit(), trainer.model.state_dict()))
    (history, weights), others = runs[0], runs[1:]
    for other_history, other_weights in others:
        assert [r["train_loss"] for r in other_history] == pytest.approx([r["train_loss"] for r in history], abs=1e-6)
        for name, tensor in weights.items():
            torch.testing.assert_close(other_weights[name], tensor, atol=1e-6, rtol=0)


def test_weight_decay_applies_to_matrices_only(tiny_config, make_model) -> None:
    model = make_model(tiny_config)
    decayed, plain = build_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {2} and {p.ndim for p in plain["params"]} == {1}
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_bad_data_is_refused_before_anything_is_written(tiny_config, make_model, char_ids, tmp_path) -> None:
    config = TrainConfig(steps=1, batch_size=2, **QUIET)
    with pytest.raises(DataError, match="training dataset is empty"):
        Trainer(make_model(tiny_config), [], config=config, out_dir=tmp_path)
    with pytest.raises(DataError, match="sequences of 64 tokens, longer than the model's context of 32"):
        Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 64), config=config, out_dir=tmp_path)
    with pytest.raises(DataError, match="evaluation dataset has sequences of 33 tokens"):
        Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 8), eval_data=CausalLMWindows(char_ids, 33),
                config=config, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_batch_of_ignored_targets_is_a_data_error(tiny_config, make_model) -> None:
    data = DictDataset(input_ids=torch.zeros(4, 8, dtype=torch.long), targets=torch.full((4, 8), -100))
    with pytest.raises(DataError, match="no targets"):
        Trainer(make_model(tiny_config), data, config=TrainConfig(steps=1, batch_size=2, **QUIET)).fit()


def test_resume_without_a_path_or_out_dir_is_refused(tiny_config, make_model, char_ids) -> None:
    trainer = Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 8), config=TrainConfig(**QUIET))
    with pytest.raises(CheckpointError, match="needs a checkpoint path"):
        trainer.resume()
    with pytest.raises(ConfigError):
        TrainConfig(batch_size=0)
