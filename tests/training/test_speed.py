"""Mixed precision and torch.compile in the Trainer; the start-up summary and its MFU estimate."""

import pytest
import torch

from fmblocks.cost import model_costs
from fmblocks.errors import CheckpointError, ConfigError
from fmblocks.training import speed
from fmblocks.training.config import TrainConfig
from fmblocks.training.datasets import CausalLMWindows
from fmblocks.training.summary import format_summary, mfu, run_summary
from fmblocks.training.trainer import Trainer

QUIET = {"progress": False}


def curve(history: list[dict]) -> list[tuple]:
    return [(r["step"], r["lr"], r["train_loss"], r["eval_loss"], r["grad_norm"]) for r in history]


def losses(history: list[dict]) -> list[float]:
    return [r["train_loss"] for r in history]


def test_bf16_on_the_cpu_learns_follows_fp32_and_resumes_exactly(tiny_config, make_model, char_ids, tmp_path) -> None:
    train, held_out = CausalLMWindows(char_ids[:200], 16), CausalLMWindows(char_ids[200:], 16)
    runs = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(steps=30, batch_size=8, lr=1e-2, warmup_steps=3, log_every=5, eval_every=10,
                             eval_batches=2, precision=precision, **QUIET)
        runs[precision] = Trainer(make_model(tiny_config), train, config=config, eval_data=held_out,
                                  out_dir=tmp_path / precision)
        runs[precision].fit(stop_at=12 if precision == "bf16" else None)
    fp32 = losses(runs["fp32"].history)
    assert fp32[-1] < fp32[0] - 0.5
    resumed = Trainer(make_model(tiny_config, seed=5), train, config=runs["bf16"].config, eval_data=held_out,
                      out_dir=tmp_path / "bf16")
    resumed.resume()
    bf16 = resumed.fit()
    # bf16 keeps 8 bits of mantissa: the curve stays within a few hundredths of a nat of fp32's
    assert losses(bf16) == pytest.approx(fp32, abs=0.05)
    whole = Trainer(make_model(tiny_config), train, config=runs["bf16"].config, eval_data=held_out,
                    out_dir=tmp_path / "whole")
    assert curve(whole.fit()) == curve(bf16)  # resuming a bf16 run is bit-exact too


def test_a_run_keeps_its_precision_on_resume_but_may_change_compile(tiny_config, make_model, char_ids, tmp_path) -> None:
    data = CausalLMWindows(char_ids, 16)
    config = TrainConfig(steps=2, batch_size=2, precision="bf16", **QUIET)
    Trainer(make_model(tiny_config), data, config=config, out_dir=tmp_path).fit(stop_at=1)
    other = Trainer(make_model(tiny_config), data, config=config.__class__(**{**config.to_dict(), "precision": "fp32"}))
    with pytest.raises(CheckpointError, match="precision: checkpoint 'bf16', now 'fp32'"):
        other.resume(tmp_path)
    eager = Trainer(make_model(tiny_config), data, config=TrainConfig(**{**config.to_dict(), "compile": True}))
    eager.resume(tmp_path)  # compile changes how a step runs, not what it computes
    assert eager.step == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_fp16_is_refused_without_cuda(tiny_config, make_model, char_ids) -> None:
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device.*got device 'cpu'; use 'bf16'"):
        TrainConfig(precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA device.*run is on cpu; use 'bf16'"):
        Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 16), config=TrainConfig(precision="fp16"))


def test_compile_falls_back_to_eager_with_one_line(tiny_config, make_model, char_ids, monkeypatch, capsys) -> None:
    data = CausalLMWindows(char_ids, 16)
    config = TrainConfig(steps=3, batch_size=4, log_every=1, eval_every=0, **QUIET)
    expected = curve(Trainer(make_model(tiny_config), data, config=config).fit())

    def fails_when_called(module):
        def forward(*args, **kwargs):
            raise torch._dynamo.exc.TorchDynamoException("no working C++ compiler")
        return forward

    def fails_at_once(module):
        raise RuntimeError("Dynamo is not supported on this Python")

    for broken, reason in ((fails_when_called, "no working C++ compiler"), (fails_at_once, "not supported")):
        monkeypatch.setattr(torch, "compile", broken)
        compiled = TrainConfig(**{**config.to_dict(), "compile": True})
        assert curve(Trainer(make_model(tiny_config), data, config=compiled).fit()) == expected
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0] and lines[0].endswith("training in eager mode")


def test_errors_of_the_model_are_not_taken_for_compiler_failures(monkeypatch) -> None:
    def model(**batch):
        raise ValueError("a bad batch")

    monkeypatch.setattr(torch, "compile", lambda module: module)
    with pytest.raises(ValueError, match="a bad batch"):
        speed.compiled(model)()


def test_summary_counts_what_fmblocks_cost_counts(tiny_config, make_model, char_ids) -> None:
    config = TrainConfig(steps=1, batch_size=4, grad_accum=2, peak_flops=1e12, **QUIET)
    trainer = Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 16), config=config)
    summary = trainer.summary()
    costs = model_costs(tiny_config, 16, batch=8)
    assert summary.params == sum(c.params for c in costs) == sum(p.numel() for p in trainer.model.parameters())
    assert summary.embedding_params == tiny_config.vocab_size * 32 + 32 * 32  # tokens + learned positions
    assert summary.tokens_per_step == 8 * 16
    assert summary.flops_per_step == 3 * sum(c.flops for c in costs)
    assert mfu(summary, seconds_per_step=summary.flops_per_step / 1e11) == pytest.approx(0.1)
    text = format_summary(summary)
    for expected in ("parameters", "non-embedding", "tokens per step: 128", "FLOPs per step", "device: cpu",
                     "precision: fp32", "strategy: single process", "an estimate"):
        assert expected in text
    assert run_summary(tiny_config, config, device=torch.device("cpu")).tokens_per_step == 8 * tiny_config.max_len


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_compile_on_cuda(tiny_config, make_model, char_ids, precision) -> None:
    config = TrainConfig(steps=40, batch_size=8, lr=1e-2, warmup_steps=4, log_every=10, eval_every=0,
                         precision=precision, compile=True, device="cuda", **QUIET)
    history = Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 16), config=config).fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5


def test_activation_checkpointing_gives_the_same_run(tiny_config, make_model, char_ids, tmp_path) -> None:
    model_config = tiny_config.replace(dropout=0.1)  # the recomputation must draw the same dropout masks
    data = CausalLMWindows(char_ids, 16)
    config = TrainConfig(steps=4, batch_size=4, log_every=1, eval_every=0, **QUIET)
    expected = Trainer(make_model(model_config), data, config=config, out_dir=tmp_path / "plain")
    expected.fit()
    model = make_model(model_config)
    names = sorted(model.state_dict())
    assert speed.checkpoint_activations(model) == model_config.n_layers
    assert sorted(model.state_dict()) == names  # checkpoints keep their weight names
    recomputed = Trainer(model, data, config=TrainConfig(**{**config.to_dict(), "activation_checkpointing": True}))
    assert [r["train_loss"] for r in recomputed.fit()] == pytest.approx(
        [r["train_loss"] for r in expected.history], abs=1e-6)


@pytest.mark.slow
def test_a_compiled_model_gives_eager_logits_and_trains(capsys) -> None:
    """A real torch.compile (inductor on the CPU) of a one-layer decoder: the same logits as eager within 1e-5,
    and two training steps through the compiled forward lower the loss. No fallback line is printed."""
    from fmblocks.models import build_model, preset

    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=32, n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, d_ff=64,
                               max_len=16))
    ids = torch.randint(0, 32, (2, 16))
    fast = speed.compiled(model)
    with torch.no_grad():
        torch.testing.assert_close(fast(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = fast(ids[:, :-1], ids[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert "eager mode" not in capsys.readouterr().err
