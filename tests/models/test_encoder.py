"""Encoder-only model: bidirectional attention, padding invariance, token types, masked-LM loss."""

import math

import pytest
import torch

from fmblocks.errors import DataError, ShapeError
from fmblocks.models import build_model, preset

SMALL = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=16)


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset("bert-style", **SMALL)).eval()


def test_every_token_sees_every_other(encoder) -> None:
    ids = torch.randint(1, 50, (2, 9))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    first, second = encoder.encode(ids), encoder.encode(changed)
    assert not torch.allclose(first[:, 0], second[:, 0])


def test_padding_changes_nothing_for_real_tokens(encoder) -> None:
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.randint(1, 50, (1, 4))], dim=1)  # arbitrary content in the padding
    mask = torch.tensor([[1] * 6 + [0] * 4])
    alone = encoder(ids, return_intermediates=True)
    with_pad = encoder(padded, mask, return_intermediates=True)
    torch.testing.assert_close(with_pad.logits[:, :6], alone.logits, atol=1e-5, rtol=1e-5)
    weights = with_pad.intermediates["attention"][0]  # (1, H, 10, 10)
    assert weights.shape == (1, 4, 10, 10)
    assert (weights[..., 6:] == 0).all()


def test_token_types_enter_the_embeddings(encoder) -> None:
    ids = torch.randint(1, 50, (1, 5))
    types = torch.tensor([[0, 0, 1, 1, 1]])
    assert not torch.allclose(encoder.encode(ids), encoder.encode(ids, token_type_ids=types))
    torch.testing.assert_close(encoder.encode(ids), encoder.encode(ids, token_type_ids=torch.zeros_like(ids)))


def test_masked_lm_loss_counts_labelled_positions_only(encoder) -> None:
    ids = torch.randint(1, 50, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = encoder(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 3], ids[:, 3])
    torch.testing.assert_close(out.loss, expected)
    assert encoder.mlm_head.out.weight is encoder.embed.tokens.weight


def test_zero_weights_give_loss_log_v() -> None:
    """Hand-worked: every weight 0 -> logits 0 -> cross-entropy log(V)."""
    model = build_model(preset("bert-style", **SMALL))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ids = torch.randint(0, 50, (2, 5))
    assert model(ids, labels=ids).loss.item() == pytest.approx(math.log(50), abs=1e-6)


def test_bad_input_is_refused(encoder) -> None:
    with pytest.raises(DataError, match="sequence length 17 exceeds the model's max_len 16"):
        encoder(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ShapeError, match="attention_mask must match input_ids"):
        encoder(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ShapeError, match=r"input_ids must be a \(B, T\) integer tensor"):
        encoder(torch.zeros(2, 5))
