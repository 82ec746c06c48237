"""ViT (ViTForImageClassification) checkpoints: patch embedding, class token, learned positions, pre-norm.

    vit.embeddings.patch_embeddings.projection  (Conv2d, layout "patch")   patch_embed.proj
    vit.embeddings.cls_token                                                cls_token
    vit.embeddings.position_embeddings  (1, N + 1, D, layout "batch1")      positions.embedding.weight
    vit.encoder.layer.i.layernorm_before / layernorm_after                 stack.layers.i.norm1 / norm2
    vit.encoder.layer.i.attention.attention.query / key / value            stack.layers.i.attn.q_proj / k_proj / v_proj
    vit.encoder.layer.i.attention.output.dense                             stack.layers.i.attn.o_proj
    vit.encoder.layer.i.intermediate.dense / output.dense                  stack.layers.i.ffn.fc_in / fc_out
    vit.layernorm, classifier                                              stack.final_norm, head

The class labels (id2label, label2id) are kept from the loaded config.json. Limits: square images of
exactly image_size; no position interpolation; the pooler is not used.
"""

from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.loader import (EXACT_CORES, HF_ACTIVATIONS, HubArch, Weight, build_config, check_fixed,
                                        hf_field, register, require)

L, H = "stack.layers.{i}.", "vit.encoder.layer.{i}."
WEIGHTS = [
    Weight("patch_embed.proj", "vit.embeddings.patch_embeddings.projection", "patch"),
    Weight("cls_token", "vit.embeddings.cls_token"),
    Weight("positions.embedding.weight", "vit.embeddings.position_embeddings", "batch1"),
    Weight(L + "norm1", H + "layernorm_before"),
    Weight(L + "attn.q_proj", H + "attention.attention.query"),
    Weight(L + "attn.k_proj", H + "attention.attention.key"),
    Weight(L + "attn.v_proj", H + "attention.attention.value"),
    Weight(L + "attn.o_proj", H + "attention.output.dense"),
    Weight(L + "norm2", H + "layernorm_after"),
    Weight(L + "ffn.fc_in", H + "intermediate.dense"),
    Weight(L + "ffn.fc_out", H + "output.dense"),
    Weight("stack.final_norm", "vit.layernorm"),
    Weight("head", "classifier"),
]
FIXED = {"hidden_act": tuple(HF_ACTIVATIONS)}
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}


def to_config(hf: dict) -> ModelConfig:
    check_fixed(hf, FIXED, "vit")
    size, patch = hf_field(hf, "image_size", "vit"), hf_field(hf, "patch_size", "vit")
    n_classes = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
    return build_config(
        "vit", arch="vit", vocab_size=0, d_model=hf_field(hf, "hidden_size", "vit"),
        n_layers=hf_field(hf, "num_hidden_layers", "vit"), n_heads=hf_field(hf, "num_attention_heads", "vit"),
        d_ff=hf_field(hf, "intermediate_size", "vit"), max_len=(size // patch) ** 2 + 1, image_size=size,
        patch_size=patch, channels=hf.get("num_channels", 3), n_classes=n_classes, pos="learned", norm="layer",
        norm_first=True, ffn="mlp", activation=HF_ACTIVATIONS[hf.get("hidden_act", "gelu")], bias=True,
        qkv_bias=bool(hf.get("qkv_bias", True)), eps=float(hf.get("layer_norm_eps", 1e-12)))


def from_config(c: ModelConfig) -> dict:
    require(c, "vit", arch=("vit",), pos=("learned",), norm=("layer",), norm_first=(True,), ffn=("mlp",),
            bias=(True,), n_kv_heads=(None, c.n_heads), mixer=("attention",), attention=EXACT_CORES,
            activation=tuple(ACTIVATION_NAMES), pos_options=({},), max_len=(c.n_patches + 1,))
    labels = {str(i): f"LABEL_{i}" for i in range(c.n_classes)}
    return {"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": c.d_model,
            "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads, "intermediate_size": c.d_ff,
            "image_size": c.image_size, "patch_size": c.patch_size, "num_channels": c.channels,
            "hidden_act": ACTIVATION_NAMES[c.activation], "layer_norm_eps": c.eps, "qkv_bias": c.qkv_bias is not False,
            "id2label": labels, "label2id": {name: int(i) for i, name in labels.items()}}


VIT = register(HubArch("vit", ("vit",), "ViTForImageClassification", WEIGHTS, to_config, from_config, tied="",
                       ignored=r"^vit\.pooler\..*$", metadata=("id2label", "label2id")))
