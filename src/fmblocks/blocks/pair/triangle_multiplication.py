"""Triangle multiplicative update: AlphaFold 2 supplement Algorithms 11 (outgoing) and 12 (incoming).

The pair entry z_ij learns from the two other edges of every triangle (i, j, k):

    z_ij <- LayerNorm(z_ij)
    a_ij  = sigmoid(Linear(z_ij)) * Linear(z_ij)        b_ij likewise, with its own weights  (c channels)
    g_ij  = sigmoid(Linear(z_ij))                                                             (c_z channels)
    outgoing (Alg 11):  z~_ij = g_ij * Linear(LayerNorm(sum_k a_ik * b_jk))      edges i->k and j->k
    incoming (Alg 12):  z~_ij = g_ij * Linear(LayerNorm(sum_k a_ki * b_kj))      edges k->i and k->j

Incoming is outgoing applied to the transposed pair tensor and transposed back, with the a and b
weights trading places (sum_k a_ki b_kj is the (j, i) entry of sum_k b_ik a_jk on z^T). AlphaFold 3 (Algorithms
12-13) is the same with every Linear bias-free: `bias=False`. Shapes: z (B, N, N, c_z) in and out;
residue mask (B, N): a and b are zeroed on pairs touching a padded residue, so padding never reaches
a real (i, j). `chunk_size` computes the triangle product `chunk_size` channels at a time (weights
sliced per chunk), so the (B, N, N, c) projection/gate buffers become (B, N, N, chunk_size), and the
output gating `chunk_size` rows at a time; the result is identical. Limits: the product runs in the
input dtype (the references cast to float32 for half precision); no dropout; no in-place updates.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.pair.gated_attention import check_chunk_size, pair_mask
from fmblocks.errors import ConfigError

DIRECTIONS = ("outgoing", "incoming")


class TriangleMultiplication(nn.Module):
    """z~ = g * Linear(LayerNorm(triangle product of a and b)); (B, N, N, c_z) -> (B, N, N, c_z)."""

    def __init__(
        self,
        c_z: int,
        c_hidden: int = 128,
        *,
        direction: Literal["outgoing", "incoming"] = "outgoing",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ConfigError(f"unknown triangle direction {direction!r}; known: {', '.join(DIRECTIONS)}")
        self.direction, self.c_hidden = direction, c_hidden
        self.norm_in = nn.LayerNorm(c_z)
        self.a_proj, self.a_gate = nn.Linear(c_z, c_hidden, bias=bias), nn.Linear(c_z, c_hidden, bias=bias)
        self.b_proj, self.b_gate = nn.Linear(c_z, c_hidden, bias=bias), nn.Linear(c_z, c_hidden, bias=bias)
        self.norm_out = nn.LayerNorm(c_hidden)
        self.out = nn.Linear(c_hidden, c_z, bias=bias)
        self.gate = nn.Linear(c_z, c_z, bias=bias)

    @staticmethod
    def _gated(z: torch.Tensor, proj: nn.Linear, gate: nn.Linear, channels: slice) -> torch.Tensor:
        """sigmoid(gate(z)) * proj(z) for a slice of the output channels only."""

        def part(layer: nn.Linear) -> torch.Tensor:
            b = None if layer.bias is None else layer.bias[channels]
            return F.linear(z, layer.weight[channels], b)

        return torch.sigmoid(part(gate)) * part(proj)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
        check_chunk_size(chunk_size)
        z = self.norm_in(z)
        keep = pair_mask(mask)
        keep = None if keep is None else keep[..., None].to(z.dtype)  # (B, N, N, 1)
        equation = "bikc,bjkc->bijc" if self.direction == "outgoing" else "bkic,bkjc->bijc"
        step = self.c_hidden if chunk_size is None else chunk_size
        product = z.new_empty(*z.shape[:-1], self.c_hidden)  # (B, N, N, c)
        for start in range(0, self.c_hidden, step):
            channels = slice(start, min(start + step, self.c_hidden))
            a = self._gated(z, self.a_proj, self.a_gate, channels)  # (B, N, N, chunk)
            b = self._gated(z, self.b_proj, self.b_gate, channels)
            if keep is not None:
                a, b = a * keep, b * keep
            product[..., channels] = torch.einsum(equation, a, b)
        if chunk_size is None:
            return torch.sigmoid(self.gate(z)) * self.out(self.norm_out(product))
        out = torch.empty_like(z)  # the output gating, `chunk_size` rows i at a time
        for start in range(0, z.shape[1], chunk_size):
            rows = slice(start, start + chunk_size)
            out[:, rows] = torch.sigmoid(self.gate(z[:, rows])) * self.out(self.norm_out(product[:, rows]))
        return out


class TriangleMultiplicationOutgoing(TriangleMultiplication):
    """Algorithm 11: the update from edges i->k and j->k."""

    def __init__(self, c_z: int, c_hidden: int = 128, *, bias: bool = True) -> None:
        super().__init__(c_z, c_hidden, direction="outgoing", bias=bias)


class TriangleMultiplicationIncoming(TriangleMultiplication):
    """Algorithm 12: the update from edges k->i and k->j."""

    def __init__(self, c_z: int, c_hidden: int = 128, *, bias: bool = True) -> None:
        super().__init__(c_z, c_hidden, direction="incoming", bias=bias)
