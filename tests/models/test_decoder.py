"""Decoder-only model: a hand-worked loss, causality, intermediates, tied embeddings, context limit."""

import math

import pytest
import torch

from fmblocks.errors import DataError, ShapeError
from fmblocks.models import build_model, preset

SMALL = dict(vocab_size=60, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=24)


@pytest.mark.parametrize("name", ["gpt2-style", "llama-style"])
def test_zero_weights_give_uniform_logits_and_loss_log_v(name: str) -> None:
    """Hand-worked: with every weight 0 the logits are 0, so the loss is log(V) exactly."""
    model = build_model(preset(name, **SMALL, n_kv_heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ids = torch.randint(0, 60, (2, 10))
    out = model(ids, ids)
    assert torch.equal(out.logits, torch.zeros(2, 10, 60))
    assert out.loss.item() == pytest.approx(math.log(60), abs=1e-6)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_future_tokens_do_not_change_earlier_logits(pos: str) -> None:
    model = build_model(preset("gpt2-style", **SMALL, pos=pos)).eval()
    ids = torch.randint(0, 60, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 60
    a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_left_padded_rows_equal_their_prompts_alone(pos: str) -> None:
    """Reference: each prompt run alone, unpadded; the padded batch must give the same logits."""
    model = build_model(preset("gpt2-style", **SMALL, pos=pos)).eval()
    prompts = [torch.randint(1, 60, (1, n)) for n in (9, 4, 6)]
    width = max(p.shape[1] for p in prompts)
    ids = torch.cat([torch.cat([torch.zeros(1, width - p.shape[1], dtype=torch.long), p], 1) for p in prompts])
    keep = torch.cat([(torch.arange(width) >= width - p.shape[1])[None] for p in prompts]).long()  # (3, 9)
    logits = model(ids, attention_mask=keep).logits
    for row, prompt in enumerate(prompts):
        alone = model(prompt).logits[0]
        torch.testing.assert_close(logits[row, width - prompt.shape[1]:], alone, atol=1e-5, rtol=1e-5)


def test_attention_mask_must_cover_the_cache_and_the_input() -> None:
    model = build_model(preset("gpt2-style", **SMALL)).eval()
    caches = model.new_caches()
    model(torch.randint(0, 60, (2, 5)), caches=caches)
    with pytest.raises(ShapeError, match=r"attention_mask must be \(B, cached \+ T\) = \(2, 6\), got \(2, 1\)"):
        model(torch.randint(0, 60, (2, 1)), caches=caches, attention_mask=torch.ones(2, 1))


def test_intermediates_have_the_documented_shapes() -> None:
    model = build_model(preset("gpt2-style", **SMALL)).eval()
    out = model(torch.randint(0, 60, (3, 7)), return_intermediates=True)
    parts = out.intermediates
    assert parts["embeddings"].shape == (3, 7, 32)
    assert [a.shape for a in parts["attention"]] == [(3, 4, 7, 7)] * 2
    assert [m.shape for m in parts["mlp"]] == [(3, 7, 64)] * 2
    assert [h.shape for h in parts["hidden"]] == [(3, 7, 32)] * 2
    weights = parts["attention"][0]
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 7))
    assert (weights.triu(diagonal=1) == 0).all()  # causal


def test_tied_and_untied_output_projection() -> None:
    tied = build_model(preset("gpt2-style", **SMALL))
    untied = build_model(preset("gpt2-style", **SMALL, tie_embeddings=False))
    assert tied.lm_head.weight is tied.embed.tokens.weight
    assert untied.lm_head.weight is not untied.embed.tokens.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 60 * 32


def test_ignored_targets_do_not_count() -> None:
    model = build_model(preset("gpt2-style", **SMALL))
    ids = torch.randint(0, 60, (2, 6))
    targets = ids.clone()
    targets[:, 3:] = -100
    full = torch.nn.functional.cross_entropy(model(ids).logits[:, :3].reshape(-1, 60), ids[:, :3].reshape(-1))
    torch.testing.assert_close(model(ids, targets).loss, full)


def test_sequence_longer_than_context_is_refused() -> None:
    model = build_model(preset("gpt2-style", **SMALL))
    with pytest.raises(DataError, match="sequence length 25 exceeds the model's max_len 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    caches = model.new_caches()
    model(torch.zeros(1, 20, dtype=torch.long), caches=caches)
    with pytest.raises(DataError, match=r"sequence length 5 \+ 20 cached exceeds the model's max_len 24"):
        model(torch.zeros(1, 5, dtype=torch.long), caches=caches)


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encoder-decoder"])
@pytest.mark.parametrize("bad", [-1, 50, 10**9])
def test_token_ids_outside_the_vocabulary_are_named(arch: str, bad: int) -> None:
    from fmblocks.errors import DataError
    from fmblocks.models import build_model, preset

    name = {"decoder": "gpt2-style", "encoder": "bert-style", "encoder-decoder": "transformer-base"}[arch]
    model = build_model(preset(name, vocab_size=50, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=8))
    ids = torch.tensor([[1, 2, 3], [4, bad, 6]])
    with pytest.raises(DataError, match=rf"input_ids\[1, 1\] = {bad} is not a token id of this model \(vocab_size 50\)"):
        model(ids, ids) if arch == "encoder-decoder" else model(ids)
