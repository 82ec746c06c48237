"""GPT-2 (GPT2LMHeadModel) checkpoints: learned positions, pre-norm LayerNorm, GELU MLP, biases everywhere.

GPT-2 stores its linear layers as Conv1D, weights (in, out) (the transpose of nn.Linear's), and fuses the
query, key and value projections into one c_attn = [q; k; v] along the output dimension:

    transformer.wte / wpe                    embed.tokens / embed.positions.embedding
    transformer.h.i.ln_1, ln_2               stack.layers.i.norm1, norm2
    transformer.h.i.attn.c_attn  (T, fused)  stack.layers.i.attn.q_proj, k_proj, v_proj    (T: layout "conv1d")
    transformer.h.i.attn.c_proj  (T)         stack.layers.i.attn.o_proj
    transformer.h.i.mlp.c_fc, c_proj  (T)    stack.layers.i.ffn.fc_in, fc_out
    transformer.ln_f, lm_head                stack.final_norm, lm_head (omitted when tied)

Limits: no cross-attention, no per-layer attention scaling, no upcast-and-reorder attention.
"""

from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.loader import (EXACT_CORES, HF_ACTIVATIONS, HubArch, Weight, build_config, check_fixed,
                                        hf_field, register, require)

L = "stack.layers.{i}."
WEIGHTS = [
    Weight("embed.tokens", "transformer.wte"),
    Weight("embed.positions.embedding", "transformer.wpe"),
    Weight((L + "attn.q_proj", L + "attn.k_proj", L + "attn.v_proj"), "transformer.h.{i}.attn.c_attn", "conv1d"),
    Weight(L + "attn.o_proj", "transformer.h.{i}.attn.c_proj", "conv1d"),
    Weight(L + "norm1", "transformer.h.{i}.ln_1"),
    Weight(L + "ffn.fc_in", "transformer.h.{i}.mlp.c_fc", "conv1d"),
    Weight(L + "ffn.fc_out", "transformer.h.{i}.mlp.c_proj", "conv1d"),
    Weight(L + "norm2", "transformer.h.{i}.ln_2"),
    Weight("stack.final_norm", "transformer.ln_f"),
    Weight("lm_head", "lm_head"),
]
FIXED = {"scale_attn_weights": (True,), "scale_attn_by_inverse_layer_idx": (False,),
         "reorder_and_upcast_attn": (False,), "add_cross_attention": (False,),
         "activation_function": tuple(HF_ACTIVATIONS)}
ACTIVATION_NAMES = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def to_config(hf: dict) -> ModelConfig:
    check_fixed(hf, FIXED, "gpt2")
    d = hf_field(hf, "n_embd", "gpt2")
    return build_config(
        "gpt2", arch="decoder", vocab_size=hf_field(hf, "vocab_size", "gpt2"), d_model=d,
        n_layers=hf_field(hf, "n_layer", "gpt2"), n_heads=hf_field(hf, "n_head", "gpt2"),
        d_ff=hf.get("n_inner") or 4 * d, max_len=hf_field(hf, "n_positions", "gpt2"), pos="learned", norm="layer",
        norm_first=True, ffn="mlp", activation=HF_ACTIVATIONS[hf.get("activation_function", "gelu_new")], bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), eps=float(hf.get("layer_norm_epsilon", 1e-5)))


def from_config(c: ModelConfig) -> dict:
    require(c, "gpt2", arch=("decoder",), pos=("learned",), norm=("layer",), norm_first=(True,), ffn=("mlp",),
            bias=(True,), qkv_bias=(None, True), n_kv_heads=(None, c.n_heads), mixer=("attention",),
            attention=EXACT_CORES, activation=tuple(ACTIVATION_NAMES), type_vocab_size=(0,), pos_options=({},))
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
            "n_embd": c.d_model, "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.d_ff,
            "n_positions": c.max_len, "activation_function": ACTIVATION_NAMES[c.activation],
            "layer_norm_epsilon": c.eps, "tie_word_embeddings": c.tie_embeddings}


GPT2 = register(HubArch("gpt2", ("gpt2",), "GPT2LMHeadModel", WEIGHTS, to_config, from_config,
                        ignored=r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)$"))
