"""Block 4 · efficient attention cores: chunked (flash-style), sparse, sliding window, linear.

Exact attention softmax(q k^T * scale + M) v costs O(T S) time and, written out, O(T S) memory.
This module trades memory or exactness for length; every method has a plain reference it is tested against.

online_softmax_attention (exact; "flash"-style, Dao et al., 2022; Rabe & Staats, 2021)
    Queries and keys are taken in blocks of `block_size`. Per query block a running row maximum m, a
    running normaliser l and an accumulator a are updated over key blocks (online softmax):
        m' = max(m, rowmax(s)),  p = exp(s - m'),  l' = l e^(m - m') + rowsum(p),  a' = a e^(m - m') + p v
    and out = a / l. Forward memory is O(T * block_size) instead of O(T * S); causal skips key blocks
    that lie wholly in the future. Equals the dense result (fully masked rows -> zeros). The algorithm
    written out in PyTorch: the plain reference of `chunked_attention`; autograd keeps every block.
chunked_attention (exact; the same result, fast)
    One fused F.scaled_dot_product_attention call per query block of `block_size`, over the keys that
    block can see (causal: the keys up to its last query, so future blocks cost nothing). torch's CPU
    kernel runs the online softmax above over key blocks, so memory stays O(block_size * S) per call
    even where a mask makes torch fall back to its written-out kernel, and autograd keeps only q, k, v,
    the output and the row log-sum-exp per block. Measured (bench/attention.py, fp32, 1 thread):
    1.0-1.3x SDPA's time at T = 1024-4096 (full and causal), where SDPA itself needs no mask.
sparse_attention (exact on a sparse pattern; Longformer / BigBird style, Beltagy et al., 2020)
    Query i may see key j when |i - j| <= window, or either is one of the first `n_global` (global)
    positions; combined with any mask and `causal`. Cost O(T (window + n_global)). Equals dense
    attention under `sparse_mask(...)`.
linear_attention (approximate softmax by a kernel; Katharopoulos et al., 2020)
    sim(q, k) = phi(q)^T phi(k) with phi(x) = elu(x) + 1 > 0, so
        out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / phi(q_i)^T (sum_j phi(k_j))
    in O(T Dh Dv); the causal version takes the sums as cumulative sums over keys. Only boolean
    key-padding masks (..., 1, S) apply; `scale` and `dropout_p` are not used (the kernel has neither).
    Equals `linear_attention_math`, the same kernel formula written as a (T, S) matrix. Option
    feature_map: "elu" (elu + 1, the paper's) or "relu".
sliding window (Mistral; Beltagy et al., 2020): each query sees its `window` most recent positions.

Registered in ATTENTION_CORES with their options: "chunked" (block_size), "sparse" (window, n_global,
block_size), "sliding-window" (window, block_size), "linear" (feature_map); e.g.
MultiHeadAttention(d, h, core="sparse", window=8) or a ModelConfig with mixer_options={"window": 8}.
Each core's `weights()` are the weights its output is made of: softmax under its pattern (exact
cores) or the normalised kernel (linear).
"""

import torch
import torch.nn.functional as F

from fmblocks.blocks.attention import (
    ATTENTION_CORES,
    AttentionCore,
    attention_math,
    attention_sdpa,
    check_inputs,
    combine_masks,
    softmax_weights,
)
from fmblocks.blocks.cache import WindowKVCache
from fmblocks.errors import ConfigError


def _mask_part(mask: torch.Tensor | None, rows: slice, cols: slice | torch.Tensor) -> torch.Tensor | None:
    """The (rows, cols) part of a mask broadcastable to (B, H, T, S); broadcast (size-1) dims stay as they are."""
    if mask is None:
        return None
    if mask.dim() >= 2 and mask.shape[-2] > 1:
        mask = mask[..., rows, :]  # (..., t_block, S)
    if mask.shape[-1] > 1:
        mask = mask[..., cols] if isinstance(cols, slice) else mask.index_select(-1, cols)  # (..., s_block)
    return mask


# --- chunked (flash-style) exact attention --------------------------------------------------------------


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    block_size: int = 256,
) -> torch.Tensor:
    """Exact attention (B, H, T, Dv): the fused kernel per query block, over the keys it can see."""
    check_inputs(q, k, v, mask)
    t, s = q.shape[-2], k.shape[-2]
    offset = s - t  # query i sits at absolute position i + offset
    outputs = []
    for q0 in range(0, t, block_size):
        q1 = min(q0 + block_size, t)
        k_end = min(s, q1 + offset) if causal else s  # later keys are in every query's future
        if k_end <= 0:  # causal queries placed before the first key see nothing
            outputs.append(q.new_zeros(*q.shape[:-2], q1 - q0, v.shape[-1]))
            continue
        # The block's queries are the last q1 - q0 of the k_end visible keys: attention_sdpa's causal alignment.
        outputs.append(attention_sdpa(q[:, :, q0:q1], k[:, :, :k_end], v[:, :, :k_end],
                                      _mask_part(mask, slice(q0, q1), slice(0, k_end)), causal=causal, scale=scale,
                                      dropout_p=dropout_p))
    return torch.cat(outputs, dim=-2)  # (B, H, T, Dv)


def online_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    block_size: int = 256,
) -> torch.Tensor:
    """Exact attention (B, H, T, Dv) by online softmax over key blocks; forward memory O(T * block_size)."""
    check_inputs(q, k, v, mask)
    t, s = q.shape[-2], k.shape[-2]
    offset = s - t  # query i sits at absolute position i + offset
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    outputs = []
    for q0 in range(0, t, block_size):
        q1 = min(q0 + block_size, t)
        qb = q[:, :, q0:q1] * scale  # (B, H, tq, Dh)
        m = qb.new_full((*qb.shape[:-1], 1), float("-inf"))  # running row max (B, H, tq, 1)
        total = qb.new_zeros(m.shape)  # running normaliser l (B, H, tq, 1)
        acc = qb.new_zeros(*qb.shape[:-1], v.shape[-1])  # running numerator (B, H, tq, Dv)
        k_end = min(s, q1 + offset) if causal else s  # later keys are in every query's future
        for k0 in range(0, k_end, block_size):
            k1 = min(k0 + block_size, k_end)
            scores = qb @ k[:, :, k0:k1].transpose(-2, -1)  # (B, H, tq, tk)
            block_mask = _mask_part(mask, slice(q0, q1), slice(k0, k1))
            if causal and k1 - 1 > q0 + offset:  # the block reaches past the first query's position
                query_pos = torch.arange(q0 + offset, q1 + offset, device=q.device)[:, None]
                block_mask = combine_masks(block_mask, torch.arange(k0, k1, device=q.device) <= query_pos)
            if block_mask is not None:
                if block_mask.dtype == torch.bool:
                    scores = scores.masked_fill(~block_mask, float("-inf"))
                else:
                    scores = scores + block_mask.to(scores.dtype)
            m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
            m_safe = m_new.masked_fill(torch.isneginf(m_new), 0.0)  # rows with no visible key yet
            p = torch.exp(scores - m_safe)  # (B, H, tq, tk), 0 where blocked
            correction = torch.exp(m - m_safe)
            total = total * correction + p.sum(dim=-1, keepdim=True)
            p_drop = F.dropout(p, dropout_p) if dropout_p > 0 else p
            acc = acc * correction + p_drop @ v[:, :, k0:k1]
            m = m_new
        outputs.append(acc / total.masked_fill(total == 0, 1.0))  # 0 only for fully masked rows (acc = 0)
    return torch.cat(outputs, dim=-2)  # (B, H, T, Dv)


# --- sparse (local window + global tokens) attention ---------------------------------------------------


def _sparse_pattern(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int, n_global: int) -> torch.Tensor:
    """(tq, tk) bool: |i - j| <= window, or i or j among the first n_global positions."""
    local = (query_pos[:, None] - key_pos[None, :]).abs() <= window
    return local | (key_pos[None, :] < n_global) | (query_pos[:, None] < n_global)


def sparse_mask(
    t: int, s: int | None = None, *, window: int, n_global: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(t, s) bool local-window + global pattern, queries being the last t of s positions."""
    s = t if s is None else s
    return _sparse_pattern(
        torch.arange(s - t, s, device=device), torch.arange(s, device=device), window, n_global
    )


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    window: int = 64,
    n_global: int = 1,
    block_size: int = 64,
) -> torch.Tensor:
    """Attention restricted to sparse_mask(window, n_global) (AND mask, causal); (B, H, T, Dv).

    Each query block gathers only the keys it can see (its window and the global keys), so time and
    memory are O(T (block_size + 2 window + n_global)); blocks holding a global query see every key.
    """
    check_inputs(q, k, v, mask)
    if window < 0 or n_global < 0:
        raise ConfigError(f"sparse attention needs window >= 0 and n_global >= 0, got {window}, {n_global}")
    t, s = q.shape[-2], k.shape[-2]
    offset = s - t
    outputs = []
    for q0 in range(0, t, block_size):
        q1 = min(q0 + block_size, t)
        first, last = q0 + offset, q1 - 1 + offset  # absolute positions of the block's queries
        if first < n_global:
            keys = torch.arange(last + 1 if causal else s, device=q.device)  # a global query sees every key
        else:
            lo, hi = max(0, first - window), min(s, (last + 1) if causal else (last + window + 1))
            keys = torch.cat([torch.arange(min(n_global, lo)), torch.arange(lo, hi)]).to(q.device)
        query_pos = torch.arange(first, last + 1, device=q.device)
        pattern = _sparse_pattern(query_pos, keys, window, n_global)  # (tq, tk)
        if causal:
            pattern = pattern & (keys[None, :] <= query_pos[:, None])
        block_mask = combine_masks(pattern, _mask_part(mask, slice(q0, q1), keys))
        k_part, v_part = k.index_select(-2, keys), v.index_select(-2, keys)  # (B, H, tk, D)
        outputs.append(attention_math(q[:, :, q0:q1], k_part, v_part, block_mask, scale=scale, dropout_p=dropout_p))
    return torch.cat(outputs, dim=-2)  # (B, H, T, Dv)


# --- linear (kernel) attention ------------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1, a positive feature map."""
    return F.elu(x) + 1.0


def relu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = max(x, 0), a non-negative feature map (rows whose kernel sums vanish output zeros)."""
    return F.relu(x)


FEATURE_MAPS = {"elu": elu_feature_map, "relu": relu_feature_map}


def _feature_map(name: str):
    if name not in FEATURE_MAPS:
        raise ConfigError(f"unknown linear attention feature_map {name!r}; known: {', '.join(FEATURE_MAPS)}")
    return FEATURE_MAPS[name]


def _key_keep(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean key-padding mask as floats (..., S, 1) for linear attention; ConfigError for other masks."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or (mask.dim() >= 2 and mask.shape[-2] != 1):
        raise ConfigError(
            "linear attention supports only a boolean key-padding mask (B, 1, 1, S) (plus causal=True); "
            f"got a {mask.dtype} mask of shape {tuple(mask.shape)}"
        )
    return mask.to(torch.float32).transpose(-2, -1) if mask.dim() >= 2 else mask[:, None].float()


def _visible_prefix(x: torch.Tensor, t: int) -> torch.Tensor:
    """Rows of cumulative key sums x (B, H, S, ...) seen by the t queries (last t of S): (B, H, t, ...)."""
    s = x.shape[2]
    index = torch.arange(s - t, s, device=x.device)  # key index of each query's last visible key
    picked = x.index_select(2, index.clamp_min(0))
    hidden = (index < 0).view(1, 1, t, *[1] * (x.dim() - 3))  # queries placed before the first key
    return picked.masked_fill(hidden, 0.0)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    feature_map: str = "elu",
) -> torch.Tensor:
    """Kernel attention with phi = FEATURE_MAPS[feature_map] in O(T Dh Dv); (B, H, T, Dv). `scale`,
    `dropout_p` unused."""
    check_inputs(q, k, v, mask)
    keep = _key_keep(mask)
    phi = _feature_map(feature_map)
    phi_q, phi_k = phi(q), phi(k)  # (B, H, T, Dh), (B, H, S, Dh)
    if keep is not None:
        phi_k = phi_k * keep.to(phi_k.dtype)  # padded keys contribute nothing
    if causal:
        kv = torch.cumsum(phi_k[..., :, None] * v[..., None, :], dim=2)  # (B, H, S, Dh, Dv)
        z = torch.cumsum(phi_k, dim=2)  # (B, H, S, Dh)
        kv, z = _visible_prefix(kv, q.shape[2]), _visible_prefix(z, q.shape[2])  # (B, H, T, ...)
        numerator = torch.einsum("bhtd,bhtde->bhte", phi_q, kv)  # (B, H, T, Dv)
        denominator = (phi_q * z).sum(dim=-1, keepdim=True)  # (B, H, T, 1)
    else:
        kv = phi_k.transpose(-2, -1) @ v  # (B, H, Dh, Dv)
        numerator = phi_q @ kv  # (B, H, T, Dv)
        denominator = phi_q @ phi_k.sum(dim=2)[..., None]  # (B, H, T, 1)
    return numerator / denominator.masked_fill(denominator == 0, 1.0)  # 0 only when no key is visible


def linear_weights(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, *, causal: bool = False,
    feature_map: str = "elu",
) -> torch.Tensor:
    """The kernel's mixing weights w = phi(q) phi(k)^T, masked, divided by their row sums: (B, H, T, S)."""
    keep = _key_keep(mask)
    phi = _feature_map(feature_map)
    weights = phi(q) @ phi(k).transpose(-2, -1)  # (B, H, T, S)
    if keep is not None:
        weights = weights * keep.transpose(-2, -1).to(weights.dtype)
    if causal:
        t, s = q.shape[-2], k.shape[-2]
        weights = weights * torch.ones(t, s, device=q.device).tril(s - t)
    total = weights.sum(dim=-1, keepdim=True)
    return weights / total.masked_fill(total == 0, 1.0)


def linear_attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *, causal: bool = False,
    feature_map: str = "elu",
) -> torch.Tensor:
    """Reference: the (T, S) matrix of linear_weights times v."""
    check_inputs(q, k, v, mask)
    return linear_weights(q, k, mask, causal=causal, feature_map=feature_map) @ v


# --- the cores ---------------------------------------------------------------------------------------------


def _check_int(core: str, name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"attention core {core!r} needs {name} an integer >= {minimum}, got {value!r}")


@ATTENTION_CORES.register("chunked")
class ChunkedCore(AttentionCore):
    """Exact attention, the fused kernel per query block of `block_size` (chunked_attention)."""

    def __init__(self, *, block_size: int = 256) -> None:
        _check_int("chunked", "block_size", block_size)
        self.block_size = block_size

    def __call__(self, q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0) -> torch.Tensor:
        return chunked_attention(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p,
                                 block_size=self.block_size)


@ATTENTION_CORES.register("sparse")
class SparseCore(AttentionCore):
    """Attention on the local window + global pattern (sparse_attention); weights are softmax under it."""

    def __init__(self, *, window: int = 64, n_global: int = 1, block_size: int = 64) -> None:
        _check_int("sparse", "window", window, 0)
        _check_int("sparse", "n_global", n_global, 0)
        _check_int("sparse", "block_size", block_size)
        self.window, self.n_global, self.block_size = window, n_global, block_size

    def __call__(self, q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0) -> torch.Tensor:
        return sparse_attention(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p, window=self.window,
                                n_global=self.n_global, block_size=self.block_size)

    def pattern(self, t: int, s: int, device: torch.device) -> torch.Tensor:
        """(t, s) bool: the keys each query may see before masks."""
        return sparse_mask(t, s, window=self.window, n_global=self.n_global, device=device)

    def weights(self, q, k, mask=None, *, causal=False, scale=None) -> torch.Tensor:
        pattern = self.pattern(q.shape[-2], k.shape[-2], q.device)
        return softmax_weights(q, k, combine_masks(mask, pattern), causal=causal, scale=scale)


@ATTENTION_CORES.register("sliding-window")
class SlidingWindowCore(SparseCore):
    """Each query sees the `window` most recent positions, itself included (Mistral-style): key j is visible
    from query i when i - window < j <= i under causal=True, |i - j| < window otherwise. Computed blockwise
    as the sparse pattern with window - 1 and no global tokens, so time and memory are O(T window)."""

    def __init__(self, *, window: int = 256, block_size: int = 64) -> None:
        _check_int("sliding-window", "window", window)
        super().__init__(window=window - 1, n_global=0, block_size=block_size)

    def new_cache(self) -> WindowKVCache:
        """Decoding needs only the last window - 1 keys and values: memory bounded by the window."""
        return WindowKVCache(self.window)


@ATTENTION_CORES.register("linear")
class LinearCore(AttentionCore):
    """Kernel (linear) attention with feature map `feature_map` ("elu" | "relu"); weights are the kernel's,
    normalised."""

    def __init__(self, *, feature_map: str = "elu") -> None:
        _feature_map(feature_map)
        self.feature_map = feature_map

    def __call__(self, q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0) -> torch.Tensor:
        return linear_attention(q, k, v, mask, causal=causal, feature_map=self.feature_map)

    def weights(self, q, k, mask=None, *, causal=False, scale=None) -> torch.Tensor:
        return linear_weights(q, k, mask, causal=causal, feature_map=self.feature_map)
