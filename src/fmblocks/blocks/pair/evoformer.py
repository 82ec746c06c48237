"""The Evoformer block: AlphaFold 2 supplement Algorithm 6.

One block updates the MSA representation m (B, S, N, c_m) and the pair representation z (B, N, N, c_z):

    m += MSARowAttentionWithPairBias(m, z)        Alg 7
    m += MSAColumnAttention(m)                    Alg 8
    m += MSATransition(m)                         Alg 9
    z += OuterProductMean(m)                      Alg 10
    z += TriangleMultiplicationOutgoing(z)        Alg 11
    z += TriangleMultiplicationIncoming(z)        Alg 12
    z += TriangleAttentionStartingNode(z)         Alg 13
    z += TriangleAttentionEndingNode(z)           Alg 14
    z += PairTransition(z)                        Alg 15

Defaults are the paper's widths (c_m = 256, c_z = 128, 8 MSA heads of 32, 4 pair heads of 32, c = 128
for the triangle update, 32 for the outer product). Masks: msa_mask (B, S, N) and residue mask (B, N);
when only one is given the other is derived from it. `chunk_size` is handed to every operator.
Limits: no row/column-wise dropout (the block behaves as in evaluation), AlphaFold 2's order (not
AlphaFold-Multimer's, which moves the outer-product mean first), no extra-MSA stack, no recycling.
"""

import torch
from torch import nn

from fmblocks.blocks.pair.msa_attention import MSAColumnAttention, MSARowAttentionWithPairBias
from fmblocks.blocks.pair.outer_product_mean import OuterProductMean
from fmblocks.blocks.pair.transition import Transition
from fmblocks.blocks.pair.triangle_attention import TriangleAttentionEndingNode, TriangleAttentionStartingNode
from fmblocks.blocks.pair.triangle_multiplication import TriangleMultiplicationIncoming, TriangleMultiplicationOutgoing


class EvoformerBlock(nn.Module):
    """Algorithm 6: (m (B, S, N, c_m), z (B, N, N, c_z)) -> the same shapes, updated."""

    def __init__(
        self,
        c_m: int = 256,
        c_z: int = 128,
        *,
        msa_heads: int = 8,
        msa_head_dim: int = 32,
        pair_heads: int = 4,
        pair_head_dim: int = 32,
        triangle_dim: int = 128,
        outer_dim: int = 32,
        transition_factor: int = 4,
    ) -> None:
        super().__init__()
        self.msa_row = MSARowAttentionWithPairBias(c_m, c_z, msa_head_dim, msa_heads)
        self.msa_column = MSAColumnAttention(c_m, msa_head_dim, msa_heads)
        self.msa_transition = Transition(c_m, transition_factor)
        self.outer_product_mean = OuterProductMean(c_m, c_z, outer_dim)
        self.triangle_out = TriangleMultiplicationOutgoing(c_z, triangle_dim)
        self.triangle_in = TriangleMultiplicationIncoming(c_z, triangle_dim)
        self.triangle_start = TriangleAttentionStartingNode(c_z, pair_head_dim, pair_heads)
        self.triangle_end = TriangleAttentionEndingNode(c_z, pair_head_dim, pair_heads)
        self.pair_transition = Transition(c_z, transition_factor)

    def forward(
        self,
        m: torch.Tensor,
        z: torch.Tensor,
        msa_mask: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None and msa_mask is not None:
            mask = msa_mask.amax(dim=1)  # a residue is real if any sequence has it
        if msa_mask is None and mask is not None:
            msa_mask = mask[:, None, :].expand(-1, m.shape[1], -1)  # (B, N) -> (B, S, N)
        c = chunk_size
        m = m + self.msa_row(m, z, msa_mask, chunk_size=c)
        m = m + self.msa_column(m, msa_mask, chunk_size=c)
        m = m + self.msa_transition(m, chunk_size=c)
        z = z + self.outer_product_mean(m, msa_mask, chunk_size=c)
        z = z + self.triangle_out(z, mask, chunk_size=c)
        z = z + self.triangle_in(z, mask, chunk_size=c)
        z = z + self.triangle_start(z, mask, chunk_size=c)
        z = z + self.triangle_end(z, mask, chunk_size=c)
        z = z + self.pair_transition(z, chunk_size=c)
        return m, z
