"""Block 6 · normalisation layers: LayerNorm (Ba et al., 2016) and RMSNorm (Zhang & Sennrich, 2019).

Both normalise each token vector x in R^D over its last dimension and rescale it with a learned gain:

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias     (var is the biased variance)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * weight

RMSNorm drops the centring and the bias (used by Llama, T5). Input (..., D) -> output (..., D).
Two paths compute the same thing: `layer_norm_reference` / `rms_norm_reference` write the equations
out step by step (the reference, statistics in the input dtype), and the modules' forward passes call
the fused kernels F.layer_norm / F.rms_norm (the fast path: one pass instead of a handful of
elementwise ops, which matters when decoding one token at a time). Tests check the two paths against
each other and both against torch.nn.LayerNorm and torch.nn.RMSNorm. Limit: for half-precision inputs
the fused kernels accumulate the statistics in float32, so the paths agree only to that dtype's precision.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import Registry

NORMS: Registry[type[nn.Module]] = Registry("norm")


def layer_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """The LayerNorm equation over the last dim, step by step; (..., D) -> (..., D)."""
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = (x - mean).pow(2).mean(dim=-1, keepdim=True)  # (..., 1), biased
    y = (x - mean) * torch.rsqrt(var + eps) * weight
    return y if bias is None else y + bias


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The RMSNorm equation over the last dim, step by step; (..., D) -> (..., D)."""
    mean_square = x.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
    return x * torch.rsqrt(mean_square + eps) * weight


def _check_dim(dim: int, eps: float) -> None:
    if dim < 1:
        raise ConfigError(f"norm dim must be a positive integer, got {dim}")
    if eps <= 0:
        raise ConfigError(f"norm eps must be > 0, got {eps}")


def _check_input(x: torch.Tensor, dim: int) -> None:
    if x.shape[-1:] != (dim,):
        raise ShapeError(f"norm expected input (..., {dim}), got {tuple(x.shape)}")


@NORMS.register("layer")
class LayerNorm(nn.Module):
    """y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias over the last dim; (..., D) -> (..., D).

    forward uses F.layer_norm; `layer_norm_reference` is the same equation written out.
    """

    def __init__(self, dim: int, *, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        _check_dim(dim, eps)
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    @classmethod
    def parameter_count(cls, dim: int) -> tuple[int, str]:
        """Parameters over `dim` (symbol d), weight and bias, and their formula."""
        return 2 * dim, "2·d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.dim)
        return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}"


@NORMS.register("rms")
class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last dim; (..., D) -> (..., D).

    forward uses F.rms_norm; `rms_norm_reference` is the same equation written out.
    """

    def __init__(self, dim: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        _check_dim(dim, eps)
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))

    @classmethod
    def parameter_count(cls, dim: int) -> tuple[int, str]:
        """Parameters over `dim` (symbol d), the weight only, and their formula."""
        return dim, "d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.dim)
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


def build_norm(name: str, dim: int, *, eps: float | None = None) -> nn.Module:
    """The norm registered as `name` ("layer" | "rms") over `dim`; `eps=None` keeps the class default."""
    cls = NORMS.get(name)
    return cls(dim) if eps is None else cls(dim, eps=eps)
