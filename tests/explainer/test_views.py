"""The data behind each view equals the model's own computation: logit lens, probabilities, Q/K/V, MLP, playground."""

import pytest
import torch

from fmblocks.blocks.attention import causal_mask
from fmblocks.errors import ConfigError, TokenizerError
from fmblocks.explainer.analysis import analyze, architecture
from fmblocks.explainer.detail import inspect_token
from fmblocks.explainer.playground import Playground, tokenize_text
from fmblocks.generation import filter_logits

TEXT = "Attention mixes the context."


def direct(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), return_intermediates=True)


def test_logit_lens_of_the_last_layer_is_the_models_prediction(char_parts) -> None:
    model, tokenizer = char_parts
    data = analyze(model, tokenizer, TEXT)
    out = direct(model, data["ids"])
    assert len(data["lens"]) == model.config.n_layers and len(data["lens"][0]) == len(data["ids"])
    probs = out.logits[0].softmax(-1)  # (T, V)
    best = probs.max(-1)
    for position, top in enumerate(data["lens"][-1]):
        assert top[0]["id"] == int(best.indices[position])
        assert top[0]["p"] == pytest.approx(float(best.values[position]), abs=1e-6)
    with torch.no_grad():  # an earlier layer: its block output through final norm and head
        first = model.lm_head(model.stack.final_norm(out.intermediates["hidden"][0]))[0, -1].softmax(-1)
    assert data["lens"][0][-1][0]["p"] == pytest.approx(float(first.max()), abs=1e-6)


def test_probabilities_show_each_stage_and_the_cut_off(char_parts) -> None:
    model, tokenizer = char_parts
    data = analyze(model, tokenizer, TEXT, temperature=0.5, top_k=4, top_p=0.9)
    logits = direct(model, data["ids"]).logits[0, -1]
    tempered = (logits / 0.5).softmax(-1)
    sampled = filter_logits(logits, temperature=0.5, top_k=4, top_p=0.9).softmax(-1)
    for item in data["next"]:
        assert item["p"] == pytest.approx(float(logits.softmax(-1)[item["id"]]), abs=1e-6)
        assert item["p_temperature"] == pytest.approx(float(tempered[item["id"]]), abs=1e-6)
        assert item["p_sampled"] == pytest.approx(float(sampled[item["id"]]), abs=1e-6)
        assert item["kept"] == (item["p_sampled"] > 0)
    assert data["cutoff"]["kept"] == int((sampled > 0).sum()) <= 4
    assert data["cutoff"]["min_kept_p_temperature"] == pytest.approx(float(tempered[sampled > 0].min()), abs=1e-6)


def test_mlp_norms_are_the_rms_of_the_activations(char_parts) -> None:
    model, tokenizer = char_parts
    data = analyze(model, tokenizer, TEXT)
    mlp = direct(model, data["ids"]).intermediates["mlp"]
    for layer, norms in enumerate(data["mlp_norm"]):
        assert torch.allclose(torch.tensor(norms), mlp[layer][0].pow(2).mean(-1).sqrt(), atol=1e-6)


@pytest.mark.parametrize("layer, head, token", [(0, 0, 0), (1, 3, 7), (1, 2, None)])
def test_qkv_steps_are_the_models_attention(char_parts, layer, head, token) -> None:
    model, tokenizer = char_parts
    detail = inspect_token(model, tokenizer, TEXT, layer=layer, head=head, token=token)
    ids = detail["ids"]
    t = len(ids) - 1 if token is None else token
    out = direct(model, ids)
    qkv = detail["qkv"]
    model_row = out.intermediates["attention"][layer][0, head, t]
    assert torch.allclose(torch.tensor(qkv["weights"]), model_row, atol=1e-6)
    # the lecture's equation from the listed numbers gives the same weights
    q, k, v = torch.tensor(qkv["query"]), torch.tensor(qkv["keys"]), torch.tensor(qkv["values"])
    scores = (k @ q) / q.numel() ** 0.5
    assert torch.allclose(scores, torch.tensor(qkv["dots"]), atol=1e-5)
    allowed = causal_mask(len(ids))[t]
    assert qkv["mask"] == allowed.tolist()
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    assert torch.allclose(weights, model_row, atol=1e-5)
    assert torch.allclose(torch.tensor(qkv["output"]), weights @ v, atol=1e-5)
    # q is the layer's own projection of its (normed) input
    block = model.stack.layers[layer]
    x = out.intermediates["embeddings"] if layer == 0 else out.intermediates["hidden"][layer - 1]
    with torch.no_grad():
        own_q = block.attn.q_proj(block.norm1(x))[0, t].view(model.config.n_heads, -1)[head]
    assert torch.allclose(own_q, q, atol=1e-6)


def test_qkv_with_rotary_positions_matches_the_model(char_parts) -> None:
    from fmblocks.models import build_model, preset

    _, tokenizer = char_parts
    torch.manual_seed(0)
    model = build_model(preset("llama-style", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4,
                               n_kv_heads=2, d_ff=64, max_len=32)).eval()
    detail = inspect_token(model, tokenizer, TEXT, layer=1, head=3, token=9)
    row = direct(model, detail["ids"]).intermediates["attention"][1][0, 3, 9]
    assert torch.allclose(torch.tensor(detail["qkv"]["weights"]), row, atol=1e-6)
    assert detail["embedding"]["position"] is None  # rotary: nothing added to the embedding


def test_embedding_parts_add_up_to_the_models_input(char_parts) -> None:
    model, tokenizer = char_parts
    detail = inspect_token(model, tokenizer, TEXT, token=5)
    e = detail["embedding"]
    embeddings = direct(model, detail["ids"]).intermediates["embeddings"][0, 5]
    assert torch.allclose(torch.tensor(e["token"]), model.embed.tokens.weight[detail["ids"][5]])
    assert torch.allclose(torch.tensor(e["token"]) + torch.tensor(e["position"]), embeddings, atol=1e-6)
    assert torch.allclose(torch.tensor(e["input"]), embeddings, atol=1e-6)


def test_mlp_units_are_the_most_active(char_parts) -> None:
    model, tokenizer = char_parts
    detail = inspect_token(model, tokenizer, TEXT, layer=1, token=3)
    acts = direct(model, detail["ids"]).intermediates["mlp"][1][0]  # (T, d_ff)
    units = detail["mlp"]["units"]
    assert [u for u, _ in units] == acts[3].abs().topk(len(units)).indices.tolist()
    assert all(value == pytest.approx(float(acts[3, u]), abs=1e-6) for u, value in units)
    assert torch.allclose(torch.tensor(detail["mlp"]["values"]), acts[:, detail["mlp"]["overall"]], atol=1e-6)


def test_inspect_refuses_bad_indices(char_parts) -> None:
    model, tokenizer = char_parts
    for options in ({"layer": 2}, {"head": -1}, {"layer": 0.5}, {"token": "x"}):
        with pytest.raises(ConfigError):
            inspect_token(model, tokenizer, TEXT, **options)


def test_architecture_lists_every_block(char_parts) -> None:
    model, _ = char_parts
    arch = architecture(model.config)
    assert [b["index"] for b in arch["blocks"]] == [0, 1]
    assert arch["positions"] == "learned" and arch["blocks"][0]["mixer"] == "attention" and arch["tied"]


def test_playground_counts_pieces_and_bytes(char_parts) -> None:
    from fmblocks.tokenizers import load

    playground = Playground(char_parts[1])
    result = tokenize_text(playground, "gpt2", "Hello world, café")
    assert result["ids"] == load("gpt2").encode("Hello world, café")
    assert result["n_chars"] == 17 and result["n_bytes"] == 18
    assert result["bytes_per_token"] == pytest.approx(18 / len(result["ids"]))
    assert tokenize_text(playground, "dna-3mer", "ACGTTNAC")["pieces"] == ["ACG", "T", "T", "N", "A", "C"]
    assert tokenize_text(playground, "bert-base-uncased", "Hi")["pieces"][0] == "[CLS]"
    assert tokenize_text(playground, "model", "abc")["ids"] == char_parts[1].encode("abc")
    with pytest.raises(TokenizerError):
        tokenize_text(playground, "dna-3mer", "hello")
    with pytest.raises(ConfigError, match="known: model, gpt2"):
        tokenize_text(playground, "nope", "x")
