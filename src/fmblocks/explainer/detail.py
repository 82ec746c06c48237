"""One layer, head and token under the magnifier: embeddings, attention step by step, feed-forward units.

Decoders (causal), encoders (bidirectional, no mask but padding, which the explainer never adds) and the
decoder of an encoder-decoder (causal self-attention, then cross-attention on the encoder's memory).

    inspect_token(model, tok, text, layer=1, head=0, token=5) -> {
        "embedding": {"token": (D,), "position": (D,) or None, "token_type": (D,) or None, "input": (D,), ...},
        "qkv": {"query": (Dh,), "keys": (S, Dh), "values": (S, Dh), "scale", "dots": (S,), "bias": (S,) or None,
                "mask": (S,) bool, "scores": (S,), "weights": (S,), "output": (Dh,)} or None,
        "mlp": {"units": top units of the token [(unit, value)], "overall": the layer's most active units
                over all tokens, "values": (T, n) their activations per token},
        "cross_qkv": the same steps for the decoder block's cross-attention (encoder-decoders; else None),
        "source_tokens": the encoder's tokens (the cross-attention's keys) or None,
        "layer", "head", "token", "tokens"}

The attention of a MultiHeadAttention layer is recomputed from its own parts, as its forward runs them:

    h = norm1(x) (pre-norm) or x,  x = the embeddings (layer 0) or the previous block's output
    q, k, v = heads(q_proj(h)), heads(k_proj(h)), heads(v_proj(h))      (B, H, T, Dh), keys/values shared
    q, k = positional.rotate(q, positions), positional.rotate(k, positions)   (rotary; identity otherwise)
    scores = q k^T * scale + bias (ALiBi) + mask (future keys -inf),  weights = core.weights(q, k, mask)
    output = weights @ v                                                 (this head's part of the mixer)

so the page's numbers are the model's: tests compare `weights` with `return_intermediates=True`.
An encoder-decoder's cross-attention is recomputed the same way: q from the decoder block's stream after
its self-attention step, k and v from the encoder's memory `model.encode(source)` (no positions, no mask).
A layer whose mixer is not attention gets "qkv": None and a reason.
"""

from typing import Any

import torch
from torch import nn

from fmblocks.blocks.attention import MultiHeadAttention, combine_masks, repeat_kv
from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import check_kind, run_model, text_stack, token_strings
from fmblocks.generation import is_integer
from fmblocks.tokenizers.base import Tokenizer

TOP_UNITS = 8  # feed-forward units listed per token and overall


def check_index(name: str, value: Any, size: int) -> int:
    """`value` as an index in 0..size-1; ConfigError otherwise."""
    if not (is_integer(value) and 0 <= value < size):
        raise ConfigError(f"{name} must be an integer in 0..{size - 1}, got {value!r}")
    return int(value)


def attention_steps(attn: MultiHeadAttention, h: torch.Tensor, head: int, token: int, *, causal: bool,
                    context: torch.Tensor | None = None) -> dict:
    """The lecture's equation for one query of one head of `attn` on its input h (1, T, D), with real numbers.

    With `context` (1, S, D) it is cross-attention: the query from h, the keys and values from the context
    (an encoder's memory), no positions, no mask.
    """
    source = h if context is None else context
    t, s = h.shape[1], source.shape[1]
    q = attn._heads(attn.q_proj(h), attn.n_heads)  # (1, H, T, Dh)
    k = attn._heads(attn.k_proj(source), attn.n_kv_heads)  # (1, H_kv, S, Dh)
    v = attn._heads(attn.v_proj(source), attn.n_kv_heads)
    scheme = attn.positional if context is None else None  # positions act in self-attention only
    if scheme is not None:
        positions = torch.arange(t)
        q, k = scheme.rotate(q, positions), scheme.rotate(k, positions)
    n_rep = attn.n_heads // attn.n_kv_heads
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (1, H, S, Dh)
    bias = None if scheme is None else scheme.score_bias(t, s, device=h.device)  # (H, T, S) or None
    mask = None if bias is None else combine_masks(None, bias.to(q.dtype))
    weights = attn.core.weights(q, k, mask, causal=causal)[0, head, token]  # (S,)
    scale = attn.head_dim ** -0.5
    dots = (q[0, head, token] @ k[0, head].T) * scale  # (S,)
    row_bias = None if bias is None else bias[head % bias.shape[0], token]
    allowed = torch.arange(s) <= token if causal else torch.ones(s, dtype=torch.bool)
    scores = (dots + (0 if row_bias is None else row_bias)).masked_fill(~allowed, float("-inf"))
    return {
        "query": q[0, head, token].tolist(), "keys": k[0, head].tolist(), "values": v[0, head].tolist(),
        "scale": scale, "dots": dots.tolist(), "bias": None if row_bias is None else row_bias.tolist(),
        "mask": allowed.tolist(), "scores": [None if s == float("-inf") else s for s in scores.tolist()],
        "weights": weights.tolist(), "output": (weights @ v[0, head]).tolist(), "core": attn.core_name,
    }


def cross_attention_input(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a decoder block's cross-attention reads from its input x (1, T, D): the residual stream after the
    block's own causal self-attention step (its `_sublayer`, as its forward runs it), normed in pre-norm."""
    positions = torch.arange(x.shape[1])
    mid, _ = block._sublayer(x, block.norm1, lambda h: (block.attn(h, causal=x.shape[1] > 1, positions=positions),
                                                        None))
    return block.norm_cross(mid) if block.norm_first else mid


def embedding_parts(model: nn.Module, ids: list[int], token: int, embedded: torch.Tensor) -> dict[str, Any]:
    """Token vector (times the scheme's scale), position vector (None when positions are not added), token-type
    vector (BERT; type 0), and the stack's input `embedded` (T, D) at the token (their sum, normed in post-norm)."""
    embed = model.embed
    scale = float(embed.positions.embedding_scale)
    vector = embed.tokens.weight[ids[token]] * scale  # (D,)
    added = embed.positions.embed(torch.tensor([token]))
    position = None if added is None else added.reshape(-1, vector.shape[0])[0]
    kind = None if embed.token_types is None else embed.token_types.weight[0]
    return {"token": vector.tolist(), "position": None if position is None else position.tolist(),
            "token_type": None if kind is None else kind.tolist(), "input": embedded[token].tolist(),
            "normed": not model.config.norm_first, "scale": scale, "positions": model.config.pos}


def mlp_units(activations: torch.Tensor, token: int, n: int = TOP_UNITS) -> dict[str, Any]:
    """activations (T, d_ff): the token's most active units, and the layer's (by mean |a|) per token."""
    row = activations[token]
    mine = row.abs().topk(min(n, row.numel())).indices
    overall = activations.abs().mean(0).topk(min(n, row.numel())).indices
    return {"units": [[int(u), float(row[u])] for u in mine], "overall": overall.tolist(),
            "values": activations[:, overall].tolist(), "d_ff": int(activations.shape[1])}


@torch.no_grad()
def inspect_token(model: nn.Module, tokenizer: Tokenizer, text: str, *, layer: int = 0, head: int = 0,
                  token: int | None = None, max_tokens: int | None = None, source: str | None = None
                  ) -> dict[str, Any]:
    """The detail views for `layer`, `head` and `token` (default the last token) of `text`; see the docstring.

    For an encoder-decoder, `source` is the encoder's text and the layers are the decoder's.
    """
    arch = check_kind(model)
    model.eval()
    config = model.config
    stack = text_stack(model)
    layer = check_index("layer", layer, len(stack.layers))
    head = check_index("head", head, config.n_heads)
    token = None if token is None else check_index("token", token, 1 << 30)
    ids, truncated, out, source_part = run_model(model, tokenizer, text, source, max_tokens)
    token = len(ids) - 1 if token is None else min(token, len(ids) - 1)
    seen = out.intermediates
    block = stack.layers[layer]
    x = seen["embeddings"] if layer == 0 else seen["hidden"][layer - 1]  # the block's input (1, T, D)
    h = block.norm1(x) if block.norm_first else x
    qkv, reason = None, None
    if isinstance(block.attn, MultiHeadAttention):
        qkv = attention_steps(block.attn, h, head, token, causal=arch != "encoder")
    else:
        reason = f"layer {layer} mixes tokens with {type(block.attn).__name__}, not attention"
    cross = None
    if getattr(block, "cross_attn", None) is not None:  # an encoder-decoder: queries here, keys/values the memory
        memory = model.encode(torch.tensor([source_part["ids"]]))  # (1, S, D)
        cross = attention_steps(block.cross_attn, cross_attention_input(block, x), head, token, causal=False,
                                context=memory)
    return {"layer": layer, "head": head, "token": token, "tokens": token_strings(tokenizer, ids), "ids": ids,
            "cross_qkv": cross, "source_tokens": None if source_part is None else source_part["tokens"],
            "embedding": embedding_parts(model, ids, token, seen["embeddings"][0]), "qkv": qkv, "qkv_reason": reason,
            "mlp": mlp_units(seen["mlp"][layer][0].float(), token), "truncated": truncated}
