"""Llama (LlamaForCausalLM) checkpoints: RoPE (+ its scalings), RMSNorm, SwiGLU, grouped-query attention.

    model.embed_tokens                          embed.tokens
    model.layers.i.input_layernorm              stack.layers.i.norm1
    model.layers.i.self_attn.{q,k,v,o}_proj     stack.layers.i.attn.{q,k,v,o}_proj
    model.layers.i.post_attention_layernorm     stack.layers.i.norm2
    model.layers.i.mlp.{gate,up,down}_proj      stack.layers.i.ffn.w_gate, w_up, w_down
    model.norm, lm_head                         stack.final_norm, lm_head (omitted when tied)

The same names serve Mistral and Qwen2 (mistral.py, qwen2.py). RoPE: `rope_parameters` (transformers 5)
or the older `rope_theta` + `rope_scaling`; rope_type "default" | "linear" | "dynamic" | "yarn" | "llama3"
becomes pos_options {"base": theta, "scaling": {...}} (blocks/rope_scaling.py). For "linear" and
"dynamic", max_position_embeddings is the trained context L and our max_len is L * factor; saving
writes L back. Limits: head_dim must be hidden_size / num_attention_heads; no partial rotary; biases
on attention and MLP both or neither.
"""

from typing import Any

from fmblocks.errors import CheckpointError
from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.loader import (EXACT_CORES, HubArch, Weight, build_config, check_fixed, hf_field,
                                        register, require)

L = "stack.layers.{i}."
H = "model.layers.{i}."
WEIGHTS = [
    Weight("embed.tokens", "model.embed_tokens"),
    *(Weight(f"{L}attn.{p}_proj", f"{H}self_attn.{p}_proj") for p in "qkvo"),
    Weight(L + "norm1", H + "input_layernorm"),
    Weight(L + "norm2", H + "post_attention_layernorm"),
    Weight(L + "ffn.w_gate", H + "mlp.gate_proj"),
    Weight(L + "ffn.w_up", H + "mlp.up_proj"),
    Weight(L + "ffn.w_down", H + "mlp.down_proj"),
    Weight("stack.final_norm", "model.norm"),
    Weight("lm_head", "lm_head"),
]
FIXED = {"hidden_act": ("silu",), "pretraining_tp": (1,), "partial_rotary_factor": (1.0, None)}
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
# rope_parameters key -> our scaling key (the others keep their names)
ROPE_KEYS = {"rope_type": "type", "original_max_position_embeddings": "original_max_len"}
STRETCHING = ("linear", "dynamic")  # max_position_embeddings is the trained context, stretched by factor


def rope_options(hf: dict, arch: str) -> tuple[dict[str, Any], int]:
    """(pos_options, max_len) from a config's rope_parameters (or rope_theta + rope_scaling)."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    kind = params.pop("rope_type", params.pop("type", "default"))
    base = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    max_pos = hf_field(hf, "max_position_embeddings", arch)
    if kind not in ROPE_TYPES:
        raise CheckpointError(f"{arch} rope_type {kind!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
    check_fixed(params, {"partial_rotary_factor": (1.0,)}, arch)
    params.pop("partial_rotary_factor", None)
    if kind == "default":
        return {"base": base}, max_pos
    scaling = {"type": kind, **{ROPE_KEYS.get(k, k): v for k, v in params.items()}}
    if kind in STRETCHING:
        scaling["original_max_len"] = max_pos
    scaling.setdefault("original_max_len", max_pos)  # as transformers' standardize_rope_params
    if kind == "yarn" and scaling.get("factor") is None:
        scaling["factor"] = max_pos / scaling["original_max_len"]
    max_len = int(max_pos * scaling["factor"]) if kind in STRETCHING else max_pos
    return {"base": base, "scaling": scaling}, max_len


def rope_fields(c: ModelConfig) -> dict[str, Any]:
    """rope_parameters and max_position_embeddings of a config (the reverse of rope_options)."""
    base = float(c.pos_options.get("base", c.rope_base))
    scaling = dict(c.pos_options.get("scaling") or {})
    if not scaling:
        return {"rope_parameters": {"rope_type": "default", "rope_theta": base}, "max_position_embeddings": c.max_len}
    names = {ours: theirs for theirs, ours in ROPE_KEYS.items()}
    params = {names.get(k, k): v for k, v in scaling.items()}
    max_pos = c.max_len
    if scaling["type"] in STRETCHING:
        max_pos = params.pop("original_max_position_embeddings")
    return {"rope_parameters": {**params, "rope_theta": base}, "max_position_embeddings": max_pos}


def decoder_config(hf: dict, arch: str, **fields: Any) -> ModelConfig:
    """The ModelConfig of a Llama-family config.json; `fields` are the family member's own choices."""
    check_fixed(hf, FIXED, arch)
    d, heads = hf_field(hf, "hidden_size", arch), hf_field(hf, "num_attention_heads", arch)
    if hf.get("head_dim") not in (None, d // heads):
        raise CheckpointError(f"{arch} config field head_dim={hf['head_dim']} is not supported; fmblocks needs "
                              f"hidden_size / num_attention_heads = {d // heads}")
    pos_options, max_len = rope_options(hf, arch)
    return build_config(
        arch, arch="decoder", vocab_size=hf_field(hf, "vocab_size", arch), d_model=d,
        n_layers=hf_field(hf, "num_hidden_layers", arch), n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads, d_ff=hf_field(hf, "intermediate_size", arch),
        max_len=max_len, pos="rope", pos_options=pos_options, rope_base=pos_options["base"], norm="rms",
        norm_first=True, ffn="swiglu", activation="silu", eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), **fields)


def decoder_fields(c: ModelConfig, arch: str, hf_class: str, **allowed: tuple) -> dict[str, Any]:
    """The config.json fields every Llama-family member writes; `allowed` its own constraints."""
    require(c, arch, arch=("decoder",), pos=("rope",), norm=("rms",), norm_first=(True,), ffn=("swiglu",),
            activation=("silu",), mixer=("attention",), type_vocab_size=(0,), **allowed)
    return {"architectures": [hf_class], "model_type": arch, "vocab_size": c.vocab_size, "hidden_size": c.d_model,
            "intermediate_size": c.d_ff, "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.n_kv_heads or c.n_heads, "head_dim": c.head_dim, "rms_norm_eps": c.eps,
            "hidden_act": "silu", "tie_word_embeddings": c.tie_embeddings, **rope_fields(c)}


def to_config(hf: dict) -> ModelConfig:
    bias = hf.get("attention_bias", False)
    if hf.get("mlp_bias", False) != bias:
        raise CheckpointError(f"llama config fields attention_bias={bias} and mlp_bias={hf.get('mlp_bias')} "
                              "differ; fmblocks supports both True or both False")
    return decoder_config(hf, "llama", bias=bias)


def from_config(c: ModelConfig) -> dict:
    fields = decoder_fields(c, "llama", "LlamaForCausalLM", attention=EXACT_CORES, qkv_bias=(None, c.bias))
    return {**fields, "attention_bias": c.bias, "mlp_bias": c.bias}


LLAMA = register(HubArch("llama", ("llama",), "LlamaForCausalLM", WEIGHTS, to_config, from_config))
