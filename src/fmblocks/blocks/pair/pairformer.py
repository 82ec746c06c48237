"""The Pairformer: AlphaFold 3 supplement Algorithm 17 (one block, and the stack of them).

AlphaFold 3 drops the MSA from the trunk's main stack; each block updates the pair representation
z (B, N, N, c_z) with the triangle operators and lets it steer the single representation s (B, N, c_s):

    z += TriangleMultiplicationOutgoing(z)        AF3 Alg 12 (AF2 Alg 11, bias-free)
    z += TriangleMultiplicationIncoming(z)        AF3 Alg 13
    z += TriangleAttentionStartingNode(z)         AF3 Alg 14
    z += TriangleAttentionEndingNode(z)           AF3 Alg 15
    z += Transition(z)                            AF3 Alg 11 (SwiGLU)
    s += AttentionPairBias(s, z)                  AF3 Alg 24 (no conditioning, beta = 0)
    s += Transition(s)

Defaults are the paper's (c_s = 384, c_z = 128, 16 single heads of 24, 4 pair heads of 32, c = 128 for
the triangle update, 48 blocks in the trunk). Residue mask (B, N); `chunk_size` goes to every operator.
Limits: no dropout (the block behaves as in evaluation), no activation checkpointing.
"""

import torch
from torch import nn

from fmblocks.blocks.pair.single_attention import AttentionPairBias
from fmblocks.blocks.pair.transition import Transition
from fmblocks.blocks.pair.triangle_attention import TriangleAttentionEndingNode, TriangleAttentionStartingNode
from fmblocks.blocks.pair.triangle_multiplication import TriangleMultiplicationIncoming, TriangleMultiplicationOutgoing
from fmblocks.errors import ConfigError


class PairformerBlock(nn.Module):
    """One iteration of Algorithm 17: (s (B, N, c_s), z (B, N, N, c_z)) -> the same shapes, updated."""

    def __init__(
        self,
        c_s: int = 384,
        c_z: int = 128,
        *,
        single_heads: int = 16,
        single_head_dim: int = 24,
        pair_heads: int = 4,
        pair_head_dim: int = 32,
        triangle_dim: int = 128,
        transition_factor: int = 4,
    ) -> None:
        super().__init__()
        self.triangle_out = TriangleMultiplicationOutgoing(c_z, triangle_dim, bias=False)
        self.triangle_in = TriangleMultiplicationIncoming(c_z, triangle_dim, bias=False)
        self.triangle_start = TriangleAttentionStartingNode(c_z, pair_head_dim, pair_heads, bias=False)
        self.triangle_end = TriangleAttentionEndingNode(c_z, pair_head_dim, pair_heads, bias=False)
        self.pair_transition = Transition(c_z, transition_factor, kind="swiglu")
        self.single_attention = AttentionPairBias(c_s, c_z, single_head_dim, single_heads)
        self.single_transition = Transition(c_s, transition_factor, kind="swiglu")

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = chunk_size
        z = z + self.triangle_out(z, mask, chunk_size=c)
        z = z + self.triangle_in(z, mask, chunk_size=c)
        z = z + self.triangle_start(z, mask, chunk_size=c)
        z = z + self.triangle_end(z, mask, chunk_size=c)
        z = z + self.pair_transition(z, chunk_size=c)
        s = s + self.single_attention(s, z, mask, chunk_size=c)
        s = s + self.single_transition(s, chunk_size=c)
        return s, z


class PairformerStack(nn.Module):
    """Algorithm 17: `n_blocks` PairformerBlocks applied in turn; keyword options go to each block."""

    def __init__(self, n_blocks: int = 48, c_s: int = 384, c_z: int = 128, **block_options: int) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ConfigError(f"n_blocks must be a positive integer, got {n_blocks}")
        self.blocks = nn.ModuleList(PairformerBlock(c_s, c_z, **block_options) for _ in range(n_blocks))

    def forward(
        self,
        s: torch.Tensor,
        z: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            s, z = block(s, z, mask, chunk_size=chunk_size)
        return s, z
