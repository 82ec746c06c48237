"""Single attention with pair bias: AlphaFold 3 supplement Algorithm 24 (AttentionPairBias), as the
Pairformer uses it (no conditioning signal, beta = 0).

    a <- LayerNorm(a_i)
    q_i = Linear(a_i);  k_i, v_i = LinearNoBias(a_i);  g_i = sigmoid(LinearNoBias(a_i))
    b^h_ij = LinearNoBias(LayerNorm(z_ij))
    A^h_ij = softmax_j(q_i . k_j / sqrt(c) + b^h_ij),   o_i = g_i * sum_j A^h_ij v_j
    out_i  = LinearNoBias(concat_h o^h_i)

The pair representation steers attention among the N tokens of the single representation: the same
role Alg 7 plays for MSA rows. Shapes: s (B, N, c_s), z (B, N, N, c_z) -> (B, N, c_s); residue mask (B, N)
masks the keys. Limits: the diffusion module's variant (adaptive LayerNorm from a conditioning signal,
the output gate with bias init -2, a token-pair bias beta) is not implemented.
"""

import torch
from torch import nn

from fmblocks.blocks.pair.gated_attention import GatedAttention, pair_bias_heads


class AttentionPairBias(nn.Module):
    """Algorithm 24 without conditioning: (B, N, c_s) and (B, N, N, c_z) -> (B, N, c_s)."""

    def __init__(self, c_s: int, c_z: int, c_hidden: int = 24, n_heads: int = 16) -> None:
        super().__init__()
        self.norm_s = nn.LayerNorm(c_s)
        self.norm_z = nn.LayerNorm(c_z)
        self.pair_bias = nn.Linear(c_z, n_heads, bias=False)
        self.attention = GatedAttention(c_s, c_hidden, n_heads, bias=False, q_bias=True)

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        bias = pair_bias_heads(self.norm_z(z), self.pair_bias)  # (B, H, N, N)
        return self.attention(self.norm_s(s), bias, mask, chunk_size=chunk_size)
