"""Blocks 3-4 · scaled dot-product attention, masks, attention cores, multi-head / grouped-query / cross attention.

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

An attention core (`AttentionCore`, registered in ATTENTION_CORES by name) is an object built from its
options (keyword-only constructor arguments, checked there) with two methods:
    core(q, k, v, mask, *, causal, scale, dropout_p) -> out (B, H, T, Dv)
    core.weights(q, k, mask, *, causal, scale) -> (B, H, T, S)   the mixing weights by the core's own
        definition (before dropout): out = weights @ v for every core here.
"math" and "sdpa" are here; efficient.py adds "chunked", "sparse", "sliding-window" and "linear".

MultiHeadAttention (the "attention" mixer) projects x (B, T, D) to H query heads and H_kv key/value heads
of size Dh = D / H (grouped-query attention when H_kv < H: query head h reads key/value head
h // (H / H_kv)), applies its position scheme's hooks (rotate q and k, bias the scores; self-attention
only), runs its core, and projects back with o_proj. With `context` (B, S, Dc) it is cross-attention:
keys and values come from the context. A KVCache keeps the keys/values of earlier steps (`new_cache()`
asks the core: the sliding-window core keeps only the last window - 1 positions).
"""

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.cache import KVCache, WindowKVCache
from fmblocks.blocks.mixers import MIXERS, MixerSpec
from fmblocks.blocks.positional import PositionScheme
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import Registry, check_options, keyword_options


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


def softmax_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + M) (B, H, T, S); rows with every key blocked are zeros."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, S)
    mask = with_causal(mask, causal, q.shape[-2], k.shape[-2], q.device)
    if mask is None:
        return scores.softmax(dim=-1)
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask.to(scores.dtype)
    dead = dead_rows(mask)
    scores = scores.masked_fill(dead, 0.0)  # finite rows: softmax (and its gradient) stays NaN-free
    return scores.softmax(dim=-1).masked_fill(dead, 0.0)


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
    weights = softmax_weights(q, k, mask, causal=causal, scale=scale)  # (B, H, T, S)
    out = F.dropout(weights, dropout_p) @ v if dropout_p > 0 else weights @ v  # (B, H, T, Dv)
    return (out, weights) if return_weights else out


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


# --- cores: the function an attention layer runs, chosen by name ------------------------------------------


class AttentionCore:
    """Exact softmax attention written out; subclasses change how it is computed or what it attends to.

    Options are the keyword-only constructor arguments (`option_names()`), checked on construction.
    `weights()` gives the mixing weights (B, H, T, S) by the core's definition, with out = weights @ v.
    """

    @classmethod
    def option_names(cls) -> list[str]:
        return keyword_options(cls)

    def new_cache(self) -> KVCache | WindowKVCache:
        """The key/value cache decoding with this core needs (every position, for exact attention)."""
        return KVCache()

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
        causal: bool = False, scale: float | None = None, dropout_p: float = 0.0,
    ) -> torch.Tensor:
        return attention_math(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p)

    def weights(
        self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, *,
        causal: bool = False, scale: float | None = None,
    ) -> torch.Tensor:
        return softmax_weights(q, k, mask, causal=causal, scale=scale)


ATTENTION_CORES: Registry[type[AttentionCore]] = Registry("attention core")
ATTENTION_CORES.register("math")(AttentionCore)


@ATTENTION_CORES.register("sdpa")
class SdpaCore(AttentionCore):
    """Exact softmax attention through torch's fused kernels (attention_sdpa)."""

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
        causal: bool = False, scale: float | None = None, dropout_p: float = 0.0,
    ) -> torch.Tensor:
        return attention_sdpa(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p)


def build_core(name: str, **options: object) -> AttentionCore:
    """The core registered as `name` built with `options`; unknown options -> ConfigError listing the known."""
    core = ATTENTION_CORES.get(name)
    check_options(f"attention core {name!r}", options, core.option_names())
    return core(**options)


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None = None) -> None:
    """ConfigError unless the heads split d_model evenly and the key/value heads divide the heads."""
    for name, value in (("d_model", d_model), ("n_heads", n_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if d_model % n_heads:
        raise ConfigError(f"d_model must be divisible by n_heads; got d_model={d_model}, n_heads={n_heads}")
    if n_kv_heads is not None and (isinstance(n_kv_heads, bool) or n_kv_heads < 1 or n_heads % n_kv_heads):
        raise ConfigError(f"n_heads must be divisible by n_kv_heads; got n_heads={n_heads}, n_kv_heads={n_kv_heads}")


# --- the module --------------------------------------------------------------------------------------------


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, S, Dh) -> (B, H_kv * n_rep, S, Dh), each key/value head shared by n_rep query heads."""
    if n_rep == 1:
        return x
    b, h_kv, s, d = x.shape
    return x[:, :, None].expand(b, h_kv, n_rep, s, d).reshape(b, h_kv * n_rep, s, d)  # (B, H, S, Dh)


@MIXERS.register("attention")
class MultiHeadAttention(nn.Module):
    """y = o_proj(concat_h Attention(x W_q^h, c W_k^h, c W_v^h)), c = context or x; (B, T, D) -> (B, T, D).

    q_proj: D -> H*Dh, k_proj/v_proj: Dc -> H_kv*Dh (Dc = d_context or D), o_proj: H*Dh -> D, Dh = D / H.
    `bias` puts biases on all four projections; `qkv_bias` (when not None) overrides it for q, k, v (Qwen2).
    `core` names the attention core and `core_options` are its options (e.g. core="sparse", window=8).
    `mask` is broadcastable to (B, H, T, S); `causal` masks future keys (with the cache offset).
    `positional` (a PositionScheme) rotates q and k at `positions` (default: cache.length .. cache.length
    + T - 1) and adds its score bias; self-attention only. The scheme is shared, not a submodule: its owner
    (the model's embeddings) saves and moves it. With a `cache`, self-attention appends this call's keys
    and values to it; cross-attention fills it with the projected context at its first call and reuses
    that afterwards (so the context must stay the same). `return_weights=True` also returns the core's
    mixing weights (B, H, T, S) (before dropout); the output is the same with or without them.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        bias: bool = True,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
        core: str = "sdpa",
        d_context: int | None = None,
        positional: PositionScheme | None = None,
        **core_options: object,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads, n_kv_heads)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads = d_model, n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = d_model // n_heads
        self.d_context = d_model if d_context is None else d_context
        self.dropout, self.core_name = dropout, core
        self.core = build_core(core, **core_options)
        object.__setattr__(self, "positional", positional)  # shared by reference, not registered (see above)
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(self.d_context, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(self.d_context, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)

    @classmethod
    def option_names(cls, spec: MixerSpec) -> list[str]:
        """The options of the spec's attention core."""
        return ATTENTION_CORES.get(spec.core).option_names()

    @classmethod
    def from_spec(
        cls, spec: MixerSpec, *, positional: PositionScheme | None = None, **core_options: object
    ) -> "MultiHeadAttention":
        return cls(spec.d_model, spec.n_heads, n_kv_heads=spec.n_kv_heads, bias=spec.bias, qkv_bias=spec.qkv_bias,
                   dropout=spec.dropout,
                   core=spec.core, d_context=spec.d_context, positional=positional, **core_options)

    def new_cache(self) -> KVCache | WindowKVCache:
        return self.core.new_cache()

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
        scheme = self.positional if context is None else None  # positions act in self-attention only
        source = x if context is None else context
        q = self._heads(self.q_proj(x), self.n_heads)  # (B, H, T, Dh)
        if context is not None and cache is not None and cache.length:
            k, v = cache.k, cache.v  # the context as projected at the first step
        else:
            k = self._heads(self.k_proj(source), self.n_kv_heads)  # (B, H_kv, S, Dh)
            v = self._heads(self.v_proj(source), self.n_kv_heads)  # (B, H_kv, S, Dh)
            if scheme is not None:
                offset = 0 if cache is None else cache.length
                if positions is None:
                    positions = torch.arange(offset, offset + t, device=x.device)
                q, k = scheme.rotate(q, positions), scheme.rotate(k, positions)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H_kv, S, Dh), S = cached + T (self) or the context's S (cross)
                if mask is not None and cache.length > k.shape[-2] and mask.shape[-1] == cache.length:
                    mask = mask[..., -k.shape[-2]:]  # a window cache dropped the oldest keys: so does the mask
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, Dh)
        bias = None if scheme is None else scheme.score_bias(t, k.shape[-2], device=x.device)  # (H, T, S)
        if bias is not None:
            mask = combine_masks(mask, bias.to(q.dtype))
        dropout_p = self.dropout if self.training else 0.0
        out = self.core(q, k, v, mask, causal=causal, scale=None, dropout_p=dropout_p)  # (B, H, T, Dh)
        y = self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))  # (B, H, T, Dh) -> (B, T, D)
        if return_weights:
            return y, self.core.weights(q, k, mask, causal=causal)  # (B, H, T, S)
        return y

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, core={self.core_name!r}"
