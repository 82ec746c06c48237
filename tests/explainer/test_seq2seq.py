"""Encoder-decoders in the explainer: cross-attention on the source, the decoder's Q/K/V, the architecture."""

import pytest
import torch

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import analyze, architecture, continue_text
from fmblocks.explainer.detail import inspect_token
from fmblocks.explainer.server import Explainer

SOURCE, TARGET = "the cat sat", "die Katze"


def test_cross_attention_and_predictions_are_the_models(seq2seq) -> None:
    model, tokenizer = seq2seq
    data = analyze(model, tokenizer, TARGET, source=SOURCE, top_k=2)
    src, tgt = tokenizer.encode(SOURCE), tokenizer.encode(TARGET)
    assert data["source"]["ids"] == src and data["ids"] == tgt and data["task"] == "next token"
    with torch.no_grad():
        out = model(torch.tensor([src]), torch.tensor([tgt]), return_intermediates=True)
    cross = torch.tensor(data["cross_attention"])  # (L_dec, H, T, S)
    assert cross.shape == (3, 4, len(tgt), len(src))
    assert torch.allclose(cross, torch.stack([a[0] for a in out.intermediates["cross_attention"]]), atol=1e-6)
    encoder = torch.tensor(data["encoder_attention"])
    assert encoder.shape == (2, 4, len(src), len(src))
    assert torch.all(torch.tensor(data["attention"]).triu(diagonal=1) == 0)  # the decoder is causal
    probs = out.logits[0, -1].softmax(-1)
    assert data["next"][0]["p"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert data["lens"][-1][-1][0]["id"] == int(probs.argmax())
    assert data["n_layers"] == 3


def test_decoder_qkv_matches_the_model(seq2seq) -> None:
    model, tokenizer = seq2seq
    detail = inspect_token(model, tokenizer, TARGET, source=SOURCE, layer=2, head=1, token=4)
    with torch.no_grad():
        out = model(torch.tensor([tokenizer.encode(SOURCE)]), torch.tensor([detail["ids"]]), return_intermediates=True)
    row = out.intermediates["attention"][2][0, 1, 4]
    assert torch.allclose(torch.tensor(detail["qkv"]["weights"]), row, atol=1e-6)
    assert detail["qkv"]["mask"] == [j <= 4 for j in range(len(detail["ids"]))]


def test_architecture_shows_both_stacks(seq2seq) -> None:
    arch = architecture(seq2seq[0].config)
    assert len(arch["encoder_blocks"]) == 2 and len(arch["blocks"]) == 3 and all(b["cross"] for b in arch["blocks"])


def test_the_server_passes_the_source_and_refuses_a_bad_one(seq2seq) -> None:
    explainer = Explainer(*seq2seq)
    assert explainer.analyze({"text": TARGET, "source": SOURCE})["source"]["ids"] == seq2seq[1].encode(SOURCE)
    with pytest.raises(ConfigError, match="source must be a string"):
        explainer.analyze({"text": TARGET, "source": 3})
    with pytest.raises(ConfigError, match="needs a decoder"):
        continue_text(*seq2seq, TARGET, max_new_tokens=2)
