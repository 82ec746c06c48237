"""Transition layers: AlphaFold 2 supplement Algorithms 9 and 15, AlphaFold 3 supplement Algorithm 11.

A position-wise two-layer MLP with a pre-LayerNorm, applied to every MSA entry, pair entry or token:

    kind="relu"   (AF2 Alg 9 MSA transition, Alg 15 pair transition):
        x <- LayerNorm(x);  out = Linear(relu(Linear(x)))                  hidden n * c
    kind="swiglu" (AF3 Alg 11):
        x <- LayerNorm(x);  out = LinearNoBias(swish(LinearNoBias(x)) * LinearNoBias(x))

Shapes: (..., c) -> (..., c); n = 4 in both papers. Being position-wise it needs no mask (padding
stays padding). `chunk_size` runs `chunk_size` slices of dim 1 at a time (pair rows, MSA sequences,
tokens), bounding the (..., n c) hidden buffer, for a pair tensor the largest activation of a block. Limits: no dropout.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.pair.gated_attention import check_chunk_size
from fmblocks.errors import ConfigError

KINDS = ("relu", "swiglu")


class Transition(nn.Module):
    """Pre-norm position-wise MLP, ReLU (AF2) or SwiGLU (AF3); (..., c) -> (..., c)."""

    def __init__(self, dim: int, factor: int = 4, *, kind: Literal["relu", "swiglu"] = "relu") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown transition kind {kind!r}; known: {', '.join(KINDS)}")
        if dim < 1 or factor < 1:
            raise ConfigError(f"transition dim and factor must be positive, got {dim}, {factor}")
        self.kind = kind
        self.norm = nn.LayerNorm(dim)
        glu = kind == "swiglu"
        self.fc_in = nn.Linear(dim, factor * dim, bias=not glu)
        self.fc_gate = nn.Linear(dim, factor * dim, bias=False) if glu else None
        self.fc_out = nn.Linear(factor * dim, dim, bias=not glu)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc_gate is None:
            return self.fc_out(F.relu(self.fc_in(x)))
        return self.fc_out(F.silu(self.fc_in(x)) * self.fc_gate(x))

    def forward(self, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
        check_chunk_size(chunk_size)
        x = self.norm(x)
        if chunk_size is None:
            return self._mlp(x)
        dim = 1 if x.dim() >= 3 else 0  # pair rows i, MSA sequences s, or tokens of (B, N, c)
        return torch.cat([self._mlp(part) for part in x.split(chunk_size, dim=dim)], dim=dim)
