"""BERT checkpoints: BertModel (the encoder) and BertForMaskedLM (the encoder under "bert." + the MLM head).

    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
        -> embed.tokens / embed.positions.embedding / embed.token_types / embed.norm
    encoder.layer.i.attention.self.query / key / value, attention.output.dense / LayerNorm
        -> stack.layers.i.attn.q_proj / k_proj / v_proj, attn.o_proj / norm1
    encoder.layer.i.intermediate.dense, output.dense / LayerNorm -> ffn.fc_in, ffn.fc_out / norm2
    cls.predictions.transform.dense / LayerNorm, cls.predictions.bias
        -> mlm_head.dense / norm, mlm_head.out.bias   (the output matrix is the tied word embedding)

A BertModel directory has no MLM head: the loaded Encoder's head is freshly initialised (untrained) and
is not written back. Limits: absolute positions only; the pooler is not used (nor written).
"""

from fmblocks.errors import CheckpointError
from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.loader import (EXACT_CORES, HF_ACTIVATIONS, HubArch, Weight, build_config, check_fixed,
                                        hf_field, register, require)

L, H = "stack.layers.{i}.", "encoder.layer.{i}."
ENCODER = [
    Weight("embed.tokens", "embeddings.word_embeddings"),
    Weight("embed.positions.embedding", "embeddings.position_embeddings"),
    Weight("embed.token_types", "embeddings.token_type_embeddings"),
    Weight("embed.norm", "embeddings.LayerNorm"),
    Weight(L + "attn.q_proj", H + "attention.self.query"),
    Weight(L + "attn.k_proj", H + "attention.self.key"),
    Weight(L + "attn.v_proj", H + "attention.self.value"),
    Weight(L + "attn.o_proj", H + "attention.output.dense"),
    Weight(L + "norm1", H + "attention.output.LayerNorm"),
    Weight(L + "ffn.fc_in", H + "intermediate.dense"),
    Weight(L + "ffn.fc_out", H + "output.dense"),
    Weight(L + "norm2", H + "output.LayerNorm"),
]
MLM_HEAD = [
    Weight("mlm_head.dense", "cls.predictions.transform.dense"),
    Weight("mlm_head.norm", "cls.predictions.transform.LayerNorm"),
    Weight("mlm_head.out", "cls.predictions"),  # .bias; .weight is the tied decoder matrix
]
FIXED = {"position_embedding_type": ("absolute",), "is_decoder": (False,), "add_cross_attention": (False,),
         "hidden_act": tuple(HF_ACTIVATIONS)}
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
IGNORED = r"^(bert\.)?(embeddings\.position_ids|pooler\..*)$|^cls\.(predictions\.decoder\..*|seq_relationship\..*)$"


def to_config(hf: dict) -> ModelConfig:
    check_fixed(hf, FIXED, "bert")
    if hf.get("tie_word_embeddings", True) is not True:
        raise CheckpointError("bert config field tie_word_embeddings=False is not supported; supported: True")
    return build_config(
        "bert", arch="encoder", vocab_size=hf_field(hf, "vocab_size", "bert"), d_model=hf_field(hf, "hidden_size", "bert"),
        n_layers=hf_field(hf, "num_hidden_layers", "bert"), n_heads=hf_field(hf, "num_attention_heads", "bert"),
        d_ff=hf_field(hf, "intermediate_size", "bert"), max_len=hf_field(hf, "max_position_embeddings", "bert"),
        type_vocab_size=hf.get("type_vocab_size", 2), pos="learned", norm="layer", norm_first=False, ffn="mlp",
        activation=HF_ACTIVATIONS[hf.get("hidden_act", "gelu")], bias=True, tie_embeddings=True,
        eps=float(hf.get("layer_norm_eps", 1e-12)))


def fields(c: ModelConfig, hf_class: str) -> dict:
    require(c, "bert", arch=("encoder",), pos=("learned",), norm=("layer",), norm_first=(False,), ffn=("mlp",),
            bias=(True,), qkv_bias=(None, True), n_kv_heads=(None, c.n_heads), mixer=("attention",),
            attention=EXACT_CORES, activation=tuple(ACTIVATION_NAMES), tie_embeddings=(True,), pos_options=({},))
    return {"architectures": [hf_class], "model_type": "bert", "vocab_size": c.vocab_size, "hidden_size": c.d_model,
            "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads, "intermediate_size": c.d_ff,
            "max_position_embeddings": c.max_len, "type_vocab_size": c.type_vocab_size,
            "hidden_act": ACTIVATION_NAMES[c.activation], "layer_norm_eps": c.eps, "tie_word_embeddings": True,
            "position_embedding_type": "absolute"}


BERT_MLM = register(HubArch(
    "bert-mlm", ("bert",), "BertForMaskedLM", [w._replace(theirs="bert." + w.theirs) for w in ENCODER] + MLM_HEAD,
    to_config, lambda c: fields(c, "BertForMaskedLM"), tied="cls.predictions.weight", ignored=IGNORED))
BERT = register(HubArch("bert", ("bert",), "BertModel", ENCODER, to_config, lambda c: fields(c, "BertModel"),
                        tied="", ignored=IGNORED, absent=r"^mlm_head\."))
