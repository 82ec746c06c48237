"""Encoder-decoders in the explainer: cross-attention on the source, the decoder's Q/K/V, the architecture."""

import pytest
import torch

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import analyze, architecture, continue_text
from fmblocks.explainer.detail import inspect_token
from fmblocks.explainer.server import Explainer
from fmblocks.generation import filter_logits

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


def test_cross_attention_qkv_takes_keys_and_values_from_the_memory(seq2seq) -> None:
    model, tokenizer = seq2seq
    src = torch.tensor([tokenizer.encode(SOURCE)])
    detail = inspect_token(model, tokenizer, TARGET, source=SOURCE, layer=1, head=2, token=3)
    tgt = torch.tensor([detail["ids"]])
    cross = detail["cross_qkv"]
    assert detail["source_tokens"] == [tokenizer.decode([i]) for i in src[0].tolist()]
    with torch.no_grad():
        out = model(src, tgt, return_intermediates=True)
        memory = model.encode(src)  # (1, S, D)
        attn = model.decoder.layers[1].cross_attn
        keys = attn.k_proj(memory).view(1, -1, 4, 8)[0, :, 2]  # (S, Dh) of head 2
        values = attn.v_proj(memory).view(1, -1, 4, 8)[0, :, 2]
    weights = torch.tensor(cross["weights"])
    assert weights.shape == (src.shape[1],) and cross["mask"] == [True] * src.shape[1]
    assert torch.allclose(weights, out.intermediates["cross_attention"][1][0, 2, 3], atol=1e-6)
    assert torch.allclose(torch.tensor(cross["keys"]), keys, atol=1e-6)
    assert torch.allclose(torch.tensor(cross["output"]), weights @ values, atol=1e-6)
    query = torch.tensor(cross["query"])
    assert torch.allclose(torch.tensor(cross["dots"]), keys @ query / 8 ** 0.5, atol=1e-5)
    assert torch.allclose(torch.tensor(cross["scores"]).softmax(-1), weights, atol=1e-6)
    assert len(detail["qkv"]["keys"]) == tgt.shape[1]  # the self-attention steps still read the target


def test_sampling_continues_the_target_prefix(seq2seq) -> None:
    model, tokenizer = seq2seq
    src = torch.tensor([tokenizer.encode(SOURCE)])
    greedy = continue_text(model, tokenizer, TARGET, source=SOURCE, max_new_tokens=5, temperature=0.0)
    target = torch.tensor([tokenizer.encode(TARGET)])
    with torch.no_grad():
        for _ in range(5):  # the reference: full forward passes on the growing target
            target = torch.cat([target, model(src, target).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert greedy["ids"] == target[0, len(TARGET):].tolist()
    assert greedy["continuation"] == tokenizer.decode(greedy["ids"])
    sampled = continue_text(model, tokenizer, TARGET, source=SOURCE, max_new_tokens=4, top_k=3, seed=7)
    generator, target = torch.Generator().manual_seed(7), torch.tensor([tokenizer.encode(TARGET)])
    with torch.no_grad():
        for _ in range(4):
            probs = filter_logits(model(src, target).logits[:, -1], temperature=1.0, top_k=3).softmax(-1)
            target = torch.cat([target, torch.multinomial(probs, 1, generator=generator)], dim=1)
    assert sampled["ids"] == target[0, len(TARGET):].tolist()
    assert Explainer(*seq2seq).generate({"text": TARGET, "source": SOURCE, "max_new_tokens": 5,
                                         "temperature": 0})["ids"] == greedy["ids"]


def test_architecture_shows_both_stacks(seq2seq) -> None:
    arch = architecture(seq2seq[0].config)
    assert len(arch["encoder_blocks"]) == 2 and len(arch["blocks"]) == 3 and all(b["cross"] for b in arch["blocks"])


def test_the_server_passes_the_source_and_refuses_a_bad_one(seq2seq) -> None:
    explainer = Explainer(*seq2seq)
    assert explainer.analyze({"text": TARGET, "source": SOURCE})["source"]["ids"] == seq2seq[1].encode(SOURCE)
    with pytest.raises(ConfigError, match="source must be a string"):
        explainer.analyze({"text": TARGET, "source": 3})
    with pytest.raises(ConfigError, match="source must be a string"):
        continue_text(*seq2seq, TARGET, max_new_tokens=2)
