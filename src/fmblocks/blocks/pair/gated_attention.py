"""The gated multi-head attention that every AlphaFold pair operator shares.

AlphaFold 2 (Jumper et al., 2021, supplement §1.6) uses one attention recipe in Algorithms 7, 8, 13 and 14,
and AlphaFold 3 (Abramson et al., 2024, supplement Algorithm 24) reuses it for the single representation:

    q, k, v = LinearNoBias(x)                                    per head h, c channels each
    g       = sigmoid(Linear(x))                                 a gate per query, head and channel
    a_ij    = softmax_j( q_i . k_j / sqrt(c) + b_ij )            b: a bias the caller derives from the pair tensor
    o_i     = g_i * sum_j a_ij v_j
    out_i   = Linear(concat_h o_i)

Shapes: x (*, L, c_in) where the leading dims (*) are independent "rows" (MSA sequences, pair rows);
bias broadcastable to (*, H, L, L); key_mask (*, L) with 1 for real positions, 0 for padding.

Masking follows the references: masked keys get an additive -1e9 before the softmax, so a padded key
has weight exactly 0 in float32 and a row with every key masked stays finite (uniform weights).
Chunked evaluation (`chunk_size`) loops over blocks of queries: the (*, H, chunk, L) logits are the
only quadratic buffer, and because the softmax is per query the result equals the unchunked one.
Limits: no dropout, no attention-weight output, float math in the input dtype.
"""

import math

import torch
from torch import nn

from fmblocks.errors import ConfigError

MASK_BIAS = 1e9  # what OpenFold, Boltz and AlphaFold add (times -1) to masked logits


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(c) + bias - 1e9 (1 - key_mask)) v, over blocks of `chunk_size` queries.

    q (*, H, Lq, c), k and v (*, H, Lk, c), bias broadcastable to (*, H, Lq, Lk), key_mask (*, Lk).
    Returns (*, H, Lq, c).
    """
    check_chunk_size(chunk_size)
    q = q / math.sqrt(q.shape[-1])
    mask_bias = None
    if key_mask is not None:
        mask_bias = (key_mask.to(q.dtype) - 1)[..., None, None, :] * MASK_BIAS  # (*, 1, 1, Lk)
    n_queries = q.shape[-2]
    step = n_queries if chunk_size is None else chunk_size
    outputs = []
    for start in range(0, n_queries, step):
        stop = min(start + step, n_queries)
        scores = q[..., start:stop, :] @ k.transpose(-1, -2)  # (*, H, chunk, Lk)
        if bias is not None:
            scores = scores + (bias if bias.shape[-2] == 1 else bias[..., start:stop, :])
        if mask_bias is not None:
            scores = scores + mask_bias
        outputs.append(scores.softmax(dim=-1) @ v)  # (*, H, chunk, c)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-2)


class GatedAttention(nn.Module):
    """Gated multi-head self-attention over the second-to-last dim; (*, L, c_in) -> (*, L, c_in).

    `bias=True` gives the gate and the output projection a bias (AlphaFold 2's Linear); `bias=False`
    drops them (AlphaFold 3's LinearNoBias). `q_bias=True` gives the query projection a bias (AF3 Alg 24).
    """

    def __init__(self, c_in: int, c_hidden: int, n_heads: int, *, bias: bool = True, q_bias: bool = False) -> None:
        super().__init__()
        if min(c_in, c_hidden, n_heads) < 1:
            raise ConfigError(f"c_in, c_hidden and n_heads must be positive, got {c_in}, {c_hidden}, {n_heads}")
        self.c_hidden, self.n_heads = c_hidden, n_heads
        width = c_hidden * n_heads
        self.q_proj = nn.Linear(c_in, width, bias=q_bias)
        self.k_proj = nn.Linear(c_in, width, bias=False)
        self.v_proj = nn.Linear(c_in, width, bias=False)
        self.gate = nn.Linear(c_in, width, bias=bias)
        self.out = nn.Linear(width, c_in, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.c_hidden)).transpose(-2, -3)  # (*, L, H*c) -> (*, H, L, c)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        o = attend(q, k, v, bias, key_mask, chunk_size)  # (*, H, L, c)
        o = o.transpose(-2, -3).flatten(-2)  # (*, H, L, c) -> (*, L, H*c)
        return self.out(torch.sigmoid(self.gate(x)) * o)


def pair_bias_heads(z: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Per-head attention bias from the pair tensor: (B, N, N, c_z) -> (B, H, N, N)."""
    return linear(z).permute(0, 3, 1, 2)  # (B, N, N, H) -> (B, H, N, N)


def pair_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Residue mask (B, N) -> pair mask (B, N, N): 1 where both residues are real."""
    return None if mask is None else mask[:, :, None] * mask[:, None, :]
