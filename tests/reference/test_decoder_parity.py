"""The gpt2-style and llama-style decoders equal transformers' GPT2LMHeadModel / LlamaForCausalLM.

Our model is built with random weights (biases and norm gains included), the weights are copied into
the reference built from its own config (random init, no download), and the logits must agree.
"""

import pytest
import torch

from fmblocks.models import build_model, preset
from fmblocks.models.pretrained import gpt2_state_dict

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, LAYERS, D_FF, MAX_LEN = 97, 64, 4, 2, 160, 48


def randomize(model: torch.nn.Module) -> None:
    """Every parameter random, so a mis-mapped bias or gain cannot hide behind its init value."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)


def gpt2_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    ours = build_model(preset("gpt2-style", vocab_size=VOCAB, d_model=D, n_heads=HEADS, n_layers=LAYERS,
                              d_ff=D_FF, max_len=MAX_LEN))
    randomize(ours)
    ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=MAX_LEN, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=D_FF,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True))
    load_exactly(ref, gpt2_state_dict(ours))
    return ours.eval(), ref.eval()


def llama_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    ours = build_model(preset("llama-style", vocab_size=VOCAB, d_model=D, n_heads=HEADS, n_kv_heads=2,
                              n_layers=LAYERS, d_ff=D_FF, max_len=MAX_LEN, rope_base=500.0))
    randomize(ours)
    ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=D, intermediate_size=D_FF, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=MAX_LEN, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0}, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False))
    weights = {"model.embed_tokens.weight": ours.embed.tokens.weight, "model.norm.weight": ours.stack.final_norm.weight,
               "lm_head.weight": ours.lm_head.weight}
    for i, layer in enumerate(ours.stack.layers):
        h = f"model.layers.{i}."
        for name in ("q", "k", "v", "o"):
            weights[f"{h}self_attn.{name}_proj.weight"] = getattr(layer.attn, f"{name}_proj").weight
        for theirs, mine in (("gate", "w_gate"), ("up", "w_up"), ("down", "w_down")):
            weights[f"{h}mlp.{theirs}_proj.weight"] = getattr(layer.ffn, mine).weight
        weights[h + "input_layernorm.weight"] = layer.norm1.weight
        weights[h + "post_attention_layernorm.weight"] = layer.norm2.weight
    load_exactly(ref, weights)
    return ours.eval(), ref.eval()


def load_exactly(ref: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` into `ref`; every reference parameter must be covered."""
    missing, unexpected = ref.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, strict=False)
    assert not unexpected
    assert not missing


@pytest.mark.parametrize("make_pair", [gpt2_pair, llama_pair], ids=["gpt2", "llama"])
def test_logits_match_transformers(make_pair) -> None:
    ours, ref = make_pair()
    ids = torch.randint(0, VOCAB, (3, 29))
    with torch.no_grad():
        expected = ref(input_ids=ids).logits
        got = ours(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make_pair", [gpt2_pair, llama_pair], ids=["gpt2", "llama"])
def test_cached_decoding_matches_transformers(make_pair) -> None:
    """Prefill with our KV cache, then one token: the logits equal the reference's full forward pass."""
    ours, ref = make_pair()
    ids = torch.randint(0, VOCAB, (2, 17))
    caches = ours.new_caches()
    with torch.no_grad():
        ours(ids[:, :-1], caches=caches)
        got = ours(ids[:, -1:], caches=caches).logits[:, -1]
        expected = ref(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_only_gpt2_style_decoders_export_gpt2_names() -> None:
    from fmblocks.errors import CheckpointError

    llama = build_model(preset("llama-style", vocab_size=VOCAB, d_model=D, n_heads=HEADS, n_kv_heads=2,
                               n_layers=1, d_ff=D_FF, max_len=MAX_LEN))
    with pytest.raises(CheckpointError, match=r"gpt2 cannot express pos='rope'"):
        gpt2_state_dict(llama)
