"""Blocks 3-4 · scaled dot-product attention, masks, multi-head / grouped-query / cross attention, KV cache.

Scaled dot-product attention (Vaswani et al., 2017), per batch element and head:

    Attention(Q, K, V) = softmax(Q K^T * scale + M) V,   scale = 1 / sqrt(Dh)
    q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dv) -> out (B, H, T, Dv), weights (B, H, T, S)

M comes from a mask broadcastable to (B, H, T, S): boolean with True = "may attend" (False -> -inf), or a
float additive mask (0 = attend, -inf = blocked, anything else = a bias such as ALiBi). `causal=True` adds
the causal mask with the T queries taken as the LAST T of the S key positions (the KV-cache layout).
A query row with every key blocked yields zeros, never NaN, in outputs, weights and gradients.

Two implementations of the same function live here and are tested to agree:
    attention_math  the equation written out (materialises the (B, H, T, S) weights; used to return them)
    attention_sdpa  torch.nn.functional.scaled_dot_product_attention (fused kernels, the default)
Both are registered in ATTENTION_CORES, a registry of fn(q, k, v, mask, *, causal, scale, dropout_p) -> out;
efficient.py adds "chunked", "sparse" and "linear".

MultiHeadAttention projects x (B, T, D) to H query heads and H_kv key/value heads of size Dh = D / H
(grouped-query attention when H_kv < H: query head h reads key/value head h // (H / H_kv)), applies
RoPE to q and k or an ALiBi bias when asked (self-attention only), runs a core, and projects back with
o_proj. With `context` (B, S, Dc) it is cross-attention: keys and values come from the context.
A KVCache keeps the keys/values of earlier steps for incremental decoding.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.positional import RotaryEmbedding, alibi_bias
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import Registry

AttentionCore = Callable[..., torch.Tensor]
ATTENTION_CORES: Registry[AttentionCore] = Registry("attention core")


# --- masks -----------------------------------------------------------------------------------------


def causal_mask(t: int, s: int | None = None, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(t, s) bool, True where query i may see key j: j <= i + (s - t) (queries are the last t positions)."""
    s = t if s is None else s
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def padding_mask(keep: torch.Tensor) -> torch.Tensor:
    """keep (B, S), nonzero/True = real token -> (B, 1, 1, S) bool key-padding mask."""
    if keep.dim() != 2:
        raise ShapeError(f"padding_mask expects keep of shape (B, S), got {tuple(keep.shape)}")
    return (keep != 0)[:, None, None, :]  # (B, 1, 1, S)


def prefix_mask(t: int, prefix_len: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(t, t) bool: bidirectional among the first prefix_len positions, causal after (prefix LM / T5)."""
    key = torch.arange(t, device=device)
    return causal_mask(t, device=device) | (key < prefix_len)[None, :]


def as_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean mask as 0 / -inf floats; a float mask unchanged (cast to dtype)."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of boolean masks (broadcast); if any mask is additive, the sum of their additive forms.

    None entries are ignored; returns None when every entry is None.
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    if all(m.dtype == torch.bool for m in present):
        combined = present[0]
        for m in present[1:]:
            combined = combined & m
        return combined
    dtype = next(m.dtype for m in present if m.dtype != torch.bool)
    combined = as_additive(present[0], dtype)
    for m in present[1:]:
        combined = combined + as_additive(m, dtype)
    return combined


def dead_rows(mask: torch.Tensor) -> torch.Tensor:
    """(..., T, 1) bool: True for query rows whose every key is blocked (they must output zeros)."""
    if mask.dtype == torch.bool:
        return ~mask.any(dim=-1, keepdim=True)
    return torch.isneginf(mask).all(dim=-1, keepdim=True)


def with_causal(
    mask: torch.Tensor | None, causal: bool, t: int, s: int, device: torch.device
) -> torch.Tensor | None:
    """`mask` combined with the (t, s) causal mask when `causal`."""
    return combine_masks(mask, causal_mask(t, s, device=device)) if causal else mask


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    """ShapeError unless q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dv) and mask ~ (B, H, T, S)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ShapeError(
            "attention expects q (B, H, T, Dh), k (B, H, S, Dh), v (B, H, S, Dv); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not q.shape[:2] == k.shape[:2] == v.shape[:2]:
        raise ShapeError(
            f"q, k, v must share (B, H); got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"q and k head dims must be equal; got q Dh={q.shape[-1]}, k Dh={k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"k and v must have the same length S; got k S={k.shape[-2]}, v S={v.shape[-2]}")
    if mask is None:
        return
    expected = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ShapeError(f"mask must be bool (True = attend) or float (additive), got dtype {mask.dtype}")
    try:
        ok = 1 <= mask.dim() <= 4 and torch.broadcast_shapes(mask.shape, expected) == expected
    except RuntimeError:
        ok = False
    if not ok:
        raise ShapeError(f"mask shape {tuple(mask.shape)} is not broadcastable to (B, H, T, S) = {expected}")


# --- the two implementations -------------------------------------------------------------------------


@ATTENTION_CORES.register("math")
def attention_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + M) v written out; optionally also the weights (B, H, T, S) before dropout."""
    check_inputs(q, k, v, mask)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, S)
    mask = with_causal(mask, causal, q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
        dead = dead_rows(mask)
        scores = scores.masked_fill(dead, 0.0)  # finite rows: softmax (and its gradient) stays NaN-free
    weights = scores.softmax(dim=-1)  # (B, H, T, S)
    if mask is not None:
        weights = weights.masked_fill(dead, 0.0)
    out = F.dropout(weights, dropout_p) @ v if dropout_p > 0 else weights @ v  # (B, H, T, Dv)
    return (out, weights) if return_weights else out


@ATTENTION_CORES.register("sdpa")
def attention_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The same function through torch's fused F.scaled_dot_product_attention; (B, H, T, Dv)."""
    check_inputs(q, k, v, mask)
    t, s = q.shape[-2], k.shape[-2]
    if causal and mask is None and t == s:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
    mask = with_causal(mask, causal, t, s, q.device)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
    dead = dead_rows(mask)
    # Open the dead rows to every key so no backend divides by zero, then zero their outputs.
    safe = mask | dead if mask.dtype == torch.bool else mask.masked_fill(dead, 0.0).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(dead, 0.0)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + M) v -> (B, H, T, Dv), or (out, weights (B, H, T, S)) via the math path."""
    if return_weights:
        return attention_math(
            q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p, return_weights=True
        )
    return attention_sdpa(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p)


# --- cache and module ----------------------------------------------------------------------------------


class KVCache:
    """Keys and values of the positions seen so far, k and v (B, H_kv, S, Dh), grown by `append`.

    They live in buffers with spare room along S that double when full, so a step of generation writes
    its new positions in place instead of copying the whole cache (O(T) amortised, not O(T^2) over a
    sequence). Under autograd (inputs that require grad) the cache concatenates instead, because later
    in-place writes would invalidate tensors saved for backward.
    """

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None  # (B, H_kv, capacity, Dh)
        self._v: torch.Tensor | None = None
        self.length = 0  # cached positions S

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v (B, H_kv, T, Dh) after the cached positions; returns all keys and values (B, H_kv, S+T, Dh)."""
        if self._k is not None and (k.shape[:2] != self._k.shape[:2] or k.shape[-1] != self._k.shape[-1]
                                    or v.shape[-1] != self._v.shape[-1]):
            raise ShapeError(
                f"KVCache holds k {tuple(self.k.shape)}, v {tuple(self.v.shape)}; cannot append "
                f"k {tuple(k.shape)}, v {tuple(v.shape)} (expected same B, H_kv and head dims)"
            )
        end = self.length + k.shape[-2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            self._k = k if self._k is None else torch.cat([self.k, k], dim=-2)
            self._v = v if self._v is None else torch.cat([self.v, v], dim=-2)
        else:
            if self._k is None or end > self._k.shape[-2]:
                self._k, self._v = self._grown(self._k, k, end), self._grown(self._v, v, end)
            self._k[:, :, self.length : end] = k
            self._v[:, :, self.length : end] = v
        self.length = end
        return self.k, self.v

    def _grown(self, buffer: torch.Tensor | None, new: torch.Tensor, needed: int) -> torch.Tensor:
        """A buffer with room for max(needed, 2 x its capacity) positions, holding the cached ones."""
        capacity = max(needed, 2 * (0 if buffer is None else buffer.shape[-2]))
        grown = new.new_empty(*new.shape[:2], capacity, new.shape[-1])
        if self.length:
            grown[:, :, : self.length] = buffer[:, :, : self.length]
        return grown


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, S, Dh) -> (B, H_kv * n_rep, S, Dh), each key/value head shared by n_rep query heads."""
    if n_rep == 1:
        return x
    b, h_kv, s, d = x.shape
    return x[:, :, None].expand(b, h_kv, n_rep, s, d).reshape(b, h_kv * n_rep, s, d)  # (B, H, S, Dh)


class MultiHeadAttention(nn.Module):
    """y = o_proj(concat_h Attention(x W_q^h, c W_k^h, c W_v^h)), c = context or x; (B, T, D) -> (B, T, D).

    q_proj: D -> H*Dh, k_proj/v_proj: Dc -> H_kv*Dh (Dc = d_context or D), o_proj: H*Dh -> D, Dh = D / H.
    `mask` is broadcastable to (B, H, T, S); `causal` masks future keys (with the cache offset). RoPE
    (`rope=`) rotates q and k at `positions` (default: cache.length .. cache.length + T - 1); `alibi=True`
    adds the ALiBi bias. Both apply to self-attention only. With a `cache`, self-attention appends this
    call's keys and values to it; cross-attention fills it with the projected context at its first call
    and reuses that afterwards (so the context must stay the same). `return_weights=True` uses the math
    path and also returns the attention weights (B, H, T, S) (before dropout).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        core: str = "sdpa",
        d_context: int | None = None,
        rope: RotaryEmbedding | None = None,
        alibi: bool = False,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ConfigError(f"d_model must be divisible by n_heads; got d_model={d_model}, n_heads={n_heads}")
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ConfigError(
                f"n_heads must be divisible by n_kv_heads; got n_heads={n_heads}, n_kv_heads={n_kv_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout must be in [0, 1), got {dropout}")
        if rope is not None and alibi:
            raise ConfigError("use either rope or alibi for positions, not both")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        if rope is not None and rope.head_dim != self.head_dim:
            raise ConfigError(f"rope head_dim must equal d_model / n_heads = {self.head_dim}, got {rope.head_dim}")
        self.d_context = d_model if d_context is None else d_context
        self.dropout, self.core, self.rope, self.alibi = dropout, core, rope, alibi
        self._core = ATTENTION_CORES.get(core)
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(self.d_context, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(self.d_context, n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)  # (B, T, n*Dh) -> (B, n, T, Dh)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        causal: bool = False,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ShapeError(f"attention expects x (B, T, {self.d_model}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        if context is not None:
            if context.dim() != 3 or context.shape[0] != b or context.shape[-1] != self.d_context:
                expected = f"({b}, S, {self.d_context})"
                raise ShapeError(f"cross-attention expects context {expected}, got {tuple(context.shape)}")
            if causal:
                raise ConfigError("cross-attention (context given) takes no causal=True")
        source = x if context is None else context
        q = self._heads(self.q_proj(x), self.n_heads)  # (B, H, T, Dh)
        if context is not None and cache is not None and cache.length:
            k, v = cache.k, cache.v  # the context as projected at the first step
        else:
            k = self._heads(self.k_proj(source), self.n_kv_heads)  # (B, H_kv, S, Dh)
            v = self._heads(self.v_proj(source), self.n_kv_heads)  # (B, H_kv, S, Dh)
            if self.rope is not None and context is None:
                offset = 0 if cache is None else cache.length
                if positions is None:
                    positions = torch.arange(offset, offset + t, device=x.device)
                q, k = self.rope(q, positions), self.rope(k, positions)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H_kv, S, Dh), S = cached + T (self) or the context's S (cross)
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, Dh)
        if self.alibi and context is None:
            mask = combine_masks(mask, alibi_bias(self.n_heads, t, k.shape[-2], device=x.device).to(q.dtype))
        dropout_p = self.dropout if self.training else 0.0
        if return_weights:
            out, weights = attention_math(q, k, v, mask, causal=causal, dropout_p=dropout_p, return_weights=True)
        else:
            out = self._core(q, k, v, mask, causal=causal, scale=None, dropout_p=dropout_p)
        y = self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))  # (B, H, T, Dh) -> (B, T, D)
        return (y, weights) if return_weights else y

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, core={self.core!r}, "
            f"alibi={self.alibi}"
        )
