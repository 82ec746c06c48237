"""Triangle self-attention: AlphaFold 2 supplement Algorithms 13 (starting node) and 14 (ending node).

Around the starting node, pair (i, j) attends over the edges (i, k) that leave the same node i, biased
by the third edge (j, k) of the triangle; around the ending node, (i, j) attends over the edges (k, j)
that enter j, biased by (k, i):

    z_ij <- LayerNorm(z_ij);   q, k, v = LinearNoBias(z);   b^h_ij = LinearNoBias(z_ij);   g = sigmoid(Linear(z))
    starting (Alg 13): a^h_ijk = softmax_k(q_ij . k_ik / sqrt(c) + b^h_jk),   o_ij = g_ij * sum_k a_ijk v_ik
    ending   (Alg 14): a^h_ijk = softmax_k(q_ij . k_kj / sqrt(c) + b^h_ki),   o_ij = g_ij * sum_k a_ijk v_kj
    z~_ij = Linear(concat_h o^h_ij)

The ending-node form is the starting-node form on the transposed pair tensor, transposed back, which
is how it is computed here. AlphaFold 3 (Algorithms 14-15) drops the gate and output biases:
`bias=False`. Shapes: z (B, N, N, c_z) in and out; residue mask (B, N) masks the keys k of real rows.
`chunk_size` bounds the (B, N, H, chunk, N) logits (the unchunked (B, N, H, N, N) buffer is the
operator's O(N^3) memory); the result equals the unchunked one. Limits: as in `gated_attention`.
"""

from typing import Literal

import torch
from torch import nn

from fmblocks.blocks.pair.gated_attention import GatedAttention, pair_bias_heads, pair_mask
from fmblocks.errors import ConfigError

NODES = ("starting", "ending")


class TriangleAttention(nn.Module):
    """Gated attention along pair rows, biased by the third triangle edge; (B, N, N, c_z) -> (B, N, N, c_z)."""

    def __init__(
        self,
        c_z: int,
        c_hidden: int = 32,
        n_heads: int = 4,
        *,
        node: Literal["starting", "ending"] = "starting",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if node not in NODES:
            raise ConfigError(f"unknown triangle node {node!r}; known: {', '.join(NODES)}")
        self.node = node
        self.norm = nn.LayerNorm(c_z)
        self.pair_bias = nn.Linear(c_z, n_heads, bias=False)
        self.attention = GatedAttention(c_z, c_hidden, n_heads, bias=bias)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
        if self.node == "ending":
            z = z.transpose(1, 2)  # Alg 14 = Alg 13 on z^T (a residue mask is symmetric under it)
        z = self.norm(z)
        bias = pair_bias_heads(z, self.pair_bias).unsqueeze(1)  # (B, H, N, N) -> (B, 1, H, N, N): b_jk for every row i
        out = self.attention(z, bias, pair_mask(mask), chunk_size=chunk_size)  # rows i, queries j, keys k
        return out.transpose(1, 2) if self.node == "ending" else out


class TriangleAttentionStartingNode(TriangleAttention):
    """Algorithm 13: (i, j) attends over the edges (i, k), biased by (j, k)."""

    def __init__(self, c_z: int, c_hidden: int = 32, n_heads: int = 4, *, bias: bool = True) -> None:
        super().__init__(c_z, c_hidden, n_heads, node="starting", bias=bias)


class TriangleAttentionEndingNode(TriangleAttention):
    """Algorithm 14: (i, j) attends over the edges (k, j), biased by (k, i)."""

    def __init__(self, c_z: int, c_hidden: int = 32, n_heads: int = 4, *, bias: bool = True) -> None:
        super().__init__(c_z, c_hidden, n_heads, node="ending", bias=bias)
