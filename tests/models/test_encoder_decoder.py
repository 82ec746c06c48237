"""Encoder-decoder: cross-attention carries the source (a copy task trains; the source matters)."""

import pytest
import torch

from fmblocks.errors import ShapeError
from fmblocks.models import build_model, preset

SMALL = dict(vocab_size=12, d_model=32, n_heads=4, n_layers=1, d_ff=64, max_len=12, dropout=0.0)
BOS = 11


def copy_batch(generator: torch.Generator, batch: int = 64, length: int = 8) -> dict[str, torch.Tensor]:
    """Source: random digits 1..10; target: the same digits. Decoder input = BOS + target[:-1]."""
    source = torch.randint(1, 11, (batch, length), generator=generator)
    decoder_input = torch.cat([torch.full((batch, 1), BOS), source[:, :-1]], dim=1)
    return {"input_ids": source, "decoder_input_ids": decoder_input, "targets": source}


def test_copy_task_trains_through_cross_attention() -> None:
    """Copying needs the source at every step: only cross-attention can bring it to the decoder.

    The first target token cannot be guessed from BOS (chance: loss log 10 = 2.3); a trained model
    gets the whole sequence right, which a broken cross-attention could not.
    """
    torch.manual_seed(0)
    model = build_model(preset("transformer-base", **SMALL, norm_first=True, pos="learned"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = model(**copy_batch(generator)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    batch = copy_batch(torch.Generator().manual_seed(1), batch=256)
    with torch.no_grad():
        out = model(**batch)
    accuracy = (out.logits.argmax(-1) == batch["targets"]).float().mean().item()
    assert out.loss.item() < 0.1 and accuracy > 0.98, (out.loss.item(), accuracy)


def test_source_reaches_the_decoder_and_padding_does_not() -> None:
    model = build_model(preset("transformer-base", **SMALL)).eval()
    batch = copy_batch(torch.Generator().manual_seed(2), batch=2, length=6)
    base = model(**batch, return_intermediates=True)
    other_source = dict(batch, input_ids=(batch["input_ids"] % 10) + 1)
    assert not torch.allclose(model(**other_source).logits, base.logits)

    padded = dict(batch, input_ids=torch.cat([batch["input_ids"], torch.full((2, 3), 5)], dim=1),
                  attention_mask=torch.tensor([[1] * 6 + [0] * 3] * 2))
    torch.testing.assert_close(model(**padded).logits, base.logits, atol=1e-5, rtol=1e-5)

    parts = base.intermediates
    assert [c.shape for c in parts["cross_attention"]] == [(2, 4, 6, 6)]
    assert parts["encoder"]["attention"][0].shape == (2, 4, 6, 6)
    assert (parts["attention"][0].triu(diagonal=1) == 0).all()  # the decoder's self-attention is causal


def test_decode_refuses_caches_of_another_model() -> None:
    model = build_model(preset("transformer-base", **SMALL)).eval()
    caches = model.new_caches()
    assert len(caches) == 1 and caches[0].cross is not None  # one layer: its self- and cross-attention caches
    memory = model.encode(torch.randint(1, 11, (1, 4)))
    with pytest.raises(ShapeError, match="expected the 1 caches of new_caches\\(\\), got 2"):
        model.decode(torch.tensor([[BOS]]), memory, caches=caches * 2)
