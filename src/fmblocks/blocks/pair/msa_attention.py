"""MSA attention: AlphaFold 2 supplement Algorithms 7 (row-wise, with pair bias) and 8 (column-wise).

The MSA representation m (B, S, N, c_m) holds S aligned sequences of N residues.

    Alg 7, row-wise gated self-attention with pair bias (within each sequence s, over residues):
        m <- LayerNorm(m);  b^h_ij = LinearNoBias(LayerNorm(z_ij))
        a^h_sij = softmax_j(q_si . k_sj / sqrt(c) + b^h_ij),   o_si = g_si * sum_j a_sij v_sj
    Alg 8, column-wise gated self-attention (within each residue column i, over sequences):
        m <- LayerNorm(m)
        a^h_sti = softmax_t(q_si . k_ti / sqrt(c)),            o_si = g_si * sum_t a_sti v_ti
    both: m~_si = Linear(concat_h o^h_si)

The row attention is where the pair representation steers the MSA; the column attention mixes
evolutionary information across sequences. MSA mask (B, S, N): rows mask their residues j, columns
mask their sequences t. `chunk_size` bounds the logits to (B, S, H, chunk, N) and (B, N, H, chunk, S).
Limits: AlphaFold 2's extra-MSA stack (global column attention, Alg 19) is not here; no dropout.
"""

import torch
from torch import nn

from fmblocks.blocks.pair.gated_attention import GatedAttention, pair_bias_heads


class MSARowAttentionWithPairBias(nn.Module):
    """Algorithm 7: (B, S, N, c_m) and pair z (B, N, N, c_z) -> (B, S, N, c_m)."""

    def __init__(self, c_m: int, c_z: int, c_hidden: int = 32, n_heads: int = 8, *, bias: bool = True) -> None:
        super().__init__()
        self.norm_m = nn.LayerNorm(c_m)
        self.norm_z = nn.LayerNorm(c_z)
        self.pair_bias = nn.Linear(c_z, n_heads, bias=False)
        self.attention = GatedAttention(c_m, c_hidden, n_heads, bias=bias)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        bias = pair_bias_heads(self.norm_z(z), self.pair_bias).unsqueeze(1)  # (B, H, N, N) -> (B, 1, H, N, N)
        return self.attention(self.norm_m(m), bias, msa_mask, chunk_size=chunk_size)


class MSAColumnAttention(nn.Module):
    """Algorithm 8: (B, S, N, c_m) -> (B, S, N, c_m), attention over the S sequences of each column."""

    def __init__(self, c_m: int, c_hidden: int = 32, n_heads: int = 8, *, bias: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c_m)
        self.attention = GatedAttention(c_m, c_hidden, n_heads, bias=bias)

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
        columns = self.norm(m).transpose(1, 2)  # (B, S, N, c_m) -> (B, N, S, c_m)
        key_mask = None if msa_mask is None else msa_mask.transpose(1, 2)  # (B, S, N) -> (B, N, S)
        return self.attention(columns, None, key_mask, chunk_size=chunk_size).transpose(1, 2)  # back to (B, S, N, c_m)
