"""ESM-2 (EsmForMaskedLM) checkpoints: a pre-norm protein encoder with rotary positions and token dropout.

    esm.embeddings.word_embeddings                          embed.tokens
    esm.encoder.layer.i.attention.LayerNorm                 stack.layers.i.norm1
    esm.encoder.layer.i.attention.self.query / key / value  stack.layers.i.attn.q_proj / k_proj / v_proj
    esm.encoder.layer.i.attention.output.dense              stack.layers.i.attn.o_proj
    esm.encoder.layer.i.LayerNorm                           stack.layers.i.norm2
    esm.encoder.layer.i.intermediate.dense / output.dense   stack.layers.i.ffn.fc_in / fc_out
    esm.encoder.emb_layer_norm_after                        stack.final_norm
    lm_head.dense / layer_norm / bias                       mlm_head.dense / norm / out.bias (decoder = tied embedding)

Older files name LayerNorm gains gamma / beta; they are read as weight / bias (`ALIASES`) and written so.
token_dropout=True becomes config.token_dropout = mask_token_id (models/encoder.py). transformers counts
positions from pad_token_id + 1; rotary positions only see differences, so ours start at 0.
Limits: rotary positions only (ESM-1b's absolute ones are refused), no embedding LayerNorm before the
stack, the contact-prediction head is not used (nor written).
"""

from fmblocks.errors import CheckpointError
from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.loader import (EXACT_CORES, HubArch, Weight, build_config, check_fixed, hf_field, register,
                                        require)

L, H = "stack.layers.{i}.", "esm.encoder.layer.{i}."
WEIGHTS = [
    Weight("embed.tokens", "esm.embeddings.word_embeddings"),
    Weight(L + "norm1", H + "attention.LayerNorm"),
    Weight(L + "attn.q_proj", H + "attention.self.query"),
    Weight(L + "attn.k_proj", H + "attention.self.key"),
    Weight(L + "attn.v_proj", H + "attention.self.value"),
    Weight(L + "attn.o_proj", H + "attention.output.dense"),
    Weight(L + "norm2", H + "LayerNorm"),
    Weight(L + "ffn.fc_in", H + "intermediate.dense"),
    Weight(L + "ffn.fc_out", H + "output.dense"),
    Weight("stack.final_norm", "esm.encoder.emb_layer_norm_after"),
    Weight("mlm_head.dense", "lm_head.dense"),
    Weight("mlm_head.norm", "lm_head.layer_norm"),
    Weight("mlm_head.out", "lm_head"),  # .bias; .weight is the tied decoder matrix
]
ALIASES = [(r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]
FIXED = {"position_embedding_type": ("rotary",), "emb_layer_norm_before": (False, None), "is_folding_model": (False,),
         "hidden_act": ("gelu",), "is_decoder": (False,), "add_cross_attention": (False,)}


def to_config(hf: dict) -> ModelConfig:
    check_fixed(hf, FIXED, "esm")
    if hf.get("tie_word_embeddings", True) is not True:
        raise CheckpointError("esm config field tie_word_embeddings=False is not supported; supported: True")
    base = float(hf.get("rope_theta", 10000.0))
    return build_config(
        "esm", arch="encoder", vocab_size=hf_field(hf, "vocab_size", "esm"), d_model=hf_field(hf, "hidden_size", "esm"),
        n_layers=hf_field(hf, "num_hidden_layers", "esm"), n_heads=hf_field(hf, "num_attention_heads", "esm"),
        d_ff=hf_field(hf, "intermediate_size", "esm"), max_len=hf_field(hf, "max_position_embeddings", "esm"),
        pos="rope", rope_base=base, norm="layer", norm_first=True, ffn="mlp", activation="gelu", bias=True,
        tie_embeddings=True, eps=float(hf.get("layer_norm_eps", 1e-5)),
        token_dropout=hf_field(hf, "mask_token_id", "esm") if hf.get("token_dropout") else None)


def from_config(c: ModelConfig) -> dict:
    require(c, "esm", arch=("encoder",), pos=("rope",), norm=("layer",), norm_first=(True,), ffn=("mlp",),
            bias=(True,), qkv_bias=(None, True), n_kv_heads=(None, c.n_heads), mixer=("attention",),
            attention=EXACT_CORES, activation=("gelu",), type_vocab_size=(0,), tie_embeddings=(True,))
    if set(c.pos_options) - {"base"}:
        raise CheckpointError(f"esm cannot express pos_options {c.pos_options}; it takes only a rope base")
    fields = {"architectures": ["EsmForMaskedLM"], "model_type": "esm", "vocab_size": c.vocab_size,
              "hidden_size": c.d_model, "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
              "intermediate_size": c.d_ff, "max_position_embeddings": c.max_len, "hidden_act": "gelu",
              "layer_norm_eps": c.eps, "position_embedding_type": "rotary", "emb_layer_norm_before": False,
              "rope_theta": float(c.pos_options.get("base", c.rope_base)), "tie_word_embeddings": True,
              "token_dropout": c.token_dropout is not None}
    if c.token_dropout is not None:
        fields["mask_token_id"] = c.token_dropout
    return fields


ESM = register(HubArch("esm", ("esm",), "EsmForMaskedLM", WEIGHTS, to_config, from_config, tied="lm_head.weight",
                       ignored=r"^esm\.(contact_head\..*|embeddings\.position_ids)$|\.inv_freq$", aliases=ALIASES))
