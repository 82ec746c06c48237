"""Encoders in the explainer: fill-mask predictions at the mask token, bidirectional Q/K/V, the masked-LM lens."""

import pytest
import torch

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import analyze, continue_text
from fmblocks.explainer.detail import inspect_token
from fmblocks.explainer.playground import Playground, tokenize_text

PROTEIN = "MKT<mask>YIAKQR"
SENTENCE = "the capital of france is [MASK] ."


def direct(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), return_intermediates=True)


@pytest.mark.parametrize("fixture, text", [("protein_encoder", PROTEIN), ("bert_encoder", SENTENCE)])
def test_fill_mask_reads_the_prediction_at_the_mask(request, fixture, text) -> None:
    model, tokenizer = request.getfixturevalue(fixture)
    data = analyze(model, tokenizer, text, top_k=3)
    mask = tokenizer.special_tokens["<mask>" if "<mask>" in tokenizer.special_tokens else "[MASK]"]
    assert data["task"] == "fill-mask" and data["ids"][data["position"]] == mask
    out = direct(model, data["ids"])
    probs = out.logits[0, data["position"]].softmax(-1)
    for item in data["next"]:
        assert item["p"] == pytest.approx(float(probs[item["id"]]), abs=1e-6)
    for position, top in enumerate(data["lens"][-1]):  # the masked-LM head on the last layer is the model's logits
        assert top[0]["id"] == int(out.logits[0, position].argmax())
    attention = torch.tensor(data["attention"])
    assert torch.any(attention.triu(diagonal=1) > 0)  # bidirectional: tokens see the ones after them


@pytest.mark.parametrize("fixture, text", [("protein_encoder", PROTEIN), ("bert_encoder", SENTENCE)])
def test_encoder_qkv_has_no_causal_mask_and_matches_the_model(request, fixture, text) -> None:
    model, tokenizer = request.getfixturevalue(fixture)
    detail = inspect_token(model, tokenizer, text, layer=1, head=2, token=2)
    assert all(detail["qkv"]["mask"])
    row = direct(model, detail["ids"]).intermediates["attention"][1][0, 2, 2]
    assert torch.allclose(torch.tensor(detail["qkv"]["weights"]), row, atol=1e-6)
    embedded = direct(model, detail["ids"]).intermediates["embeddings"][0, 2]
    assert torch.allclose(torch.tensor(detail["embedding"]["input"]), embedded, atol=1e-6)


def test_bert_embedding_parts_include_the_token_type(bert_encoder) -> None:
    model, tokenizer = bert_encoder
    e = inspect_token(model, tokenizer, SENTENCE, token=3)["embedding"]
    assert e["token_type"] is not None and e["normed"]
    total = torch.tensor(e["token"]) + torch.tensor(e["position"]) + torch.tensor(e["token_type"])
    assert torch.allclose(model.embed.norm(total), torch.tensor(e["input"]), atol=1e-5)


def test_an_encoder_cannot_sample_a_continuation(protein_encoder) -> None:
    with pytest.raises(ConfigError, match="needs a decoder"):
        continue_text(*protein_encoder, PROTEIN, max_new_tokens=2)


def test_other_kinds_are_refused_with_the_known_ones() -> None:
    from fmblocks.models import build_model, preset

    model = build_model(preset("vit-tiny", n_classes=10))
    with pytest.raises(ConfigError, match="encoders .fill-mask. and encoder-decoders .*not vit"):
        analyze(model, None, "x")


def test_special_tokens_show_by_name_and_the_playground_reads_the_mask(bert_encoder) -> None:
    model, tokenizer = bert_encoder
    text = "a [MASK] day"
    data = analyze(model, tokenizer, text)
    mask = tokenizer.special_tokens["[MASK]"]
    assert data["tokens"][data["ids"].index(mask)] == "[MASK]"
    assert {data["tokens"][0], data["tokens"][-1]} <= set(tokenizer.special_tokens)  # [CLS] ... [SEP] where added
    pieces = tokenize_text(Playground(tokenizer), "model", text)
    assert pieces["ids"] == data["ids"] and "[MASK]" in pieces["pieces"]
