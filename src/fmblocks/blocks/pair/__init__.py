"""AlphaFold's pair-representation operators (AlphaFold 2 supplement Algorithms 6-15, AlphaFold 3
Algorithms 11, 17 and 24), one operator per module:

    gated_attention          the gated multi-head attention they share (masking, chunked queries)
    msa_attention            Alg 7 MSA row attention with pair bias, Alg 8 MSA column attention
    transition               Alg 9/15 (ReLU) and AF3 Alg 11 (SwiGLU) transitions
    outer_product_mean       Alg 10, MSA -> pair
    triangle_multiplication  Alg 11/12, outgoing and incoming edges
    triangle_attention       Alg 13/14, around the starting and the ending node
    single_attention         AF3 Alg 24, single attention with pair bias
    evoformer                Alg 6, the Evoformer block
    pairformer               AF3 Alg 17, the Pairformer block and stack

Shapes: pair z (B, N, N, c_z), MSA m (B, S, N, c_m), single s (B, N, c_s); residue mask (B, N), MSA
mask (B, S, N), 1 for real and 0 for padding. Every operator takes `chunk_size` to bound peak memory.
"""

from fmblocks.blocks.pair.evoformer import EvoformerBlock
from fmblocks.blocks.pair.gated_attention import GatedAttention, attend
from fmblocks.blocks.pair.msa_attention import MSAColumnAttention, MSARowAttentionWithPairBias
from fmblocks.blocks.pair.outer_product_mean import OuterProductMean
from fmblocks.blocks.pair.pairformer import PairformerBlock, PairformerStack
from fmblocks.blocks.pair.single_attention import AttentionPairBias
from fmblocks.blocks.pair.transition import Transition
from fmblocks.blocks.pair.triangle_attention import (
    TriangleAttention,
    TriangleAttentionEndingNode,
    TriangleAttentionStartingNode,
)
from fmblocks.blocks.pair.triangle_multiplication import (
    TriangleMultiplication,
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)

__all__ = [
    "AttentionPairBias",
    "EvoformerBlock",
    "GatedAttention",
    "MSAColumnAttention",
    "MSARowAttentionWithPairBias",
    "OuterProductMean",
    "PairformerBlock",
    "PairformerStack",
    "Transition",
    "TriangleAttention",
    "TriangleAttentionEndingNode",
    "TriangleAttentionStartingNode",
    "TriangleMultiplication",
    "TriangleMultiplicationIncoming",
    "TriangleMultiplicationOutgoing",
    "attend",
]
