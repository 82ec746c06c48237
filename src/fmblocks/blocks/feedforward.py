"""Blocks 3 and 5 · activations and position-wise feed-forward networks.

Activations (elementwise, any shape), chosen by name from `ACTIVATIONS`:

    relu(x)      = max(0, x)
    gelu(x)      = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))                       (exact, BERT / GPT-2 paper)
    gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))               (GPT-2 code's approximation)
    silu(x)      = x * sigmoid(x)                                                 (a.k.a. swish)

Feed-forwards, applied to every token independently, (B, T, D) -> (B, T, D):

    MLP:      y = W_out act(W_in x + b_in) + b_out                   hidden (B, T, d_hidden)
    GatedMLP: y = W_down (act(W_gate x) * W_up x)                    (Shazeer, 2020: GLU variants)
              SwiGLU = GatedMLP with silu (Llama), GeGLU = GatedMLP with gelu.

`forward(x, return_hidden=True)` also returns the hidden activations that feed the output projection
(after the activation, and after the gate product for GatedMLP), for inspection. Dropout, when > 0,
is applied to that hidden tensor (as in torch.nn.TransformerEncoderLayer).
"""

import math

import torch
from torch import nn

from fmblocks.errors import ConfigError
from fmblocks.registry import Registry

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")
FEEDFORWARDS: Registry[type[nn.Module]] = Registry("feed-forward")


@ACTIVATIONS.register("relu")
class ReLU(nn.Module):
    """relu(x) = max(0, x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)


@ACTIVATIONS.register("gelu")
class GELU(nn.Module):
    """gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact Gaussian error linear unit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


@ACTIVATIONS.register("gelu_tanh")
class GELUTanh(nn.Module):
    """gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


@ACTIVATIONS.register("silu")
class SiLU(nn.Module):
    """silu(x) = x * sigmoid(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _check_sizes(d_model: int, d_hidden: int, dropout: float) -> None:
    if d_model < 1 or d_hidden < 1:
        raise ConfigError(f"feed-forward sizes must be positive, got d_model={d_model}, d_hidden={d_hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


@FEEDFORWARDS.register("mlp")
class MLP(nn.Module):
    """Two-layer perceptron y = fc_out(act(fc_in x)); (B, T, D) -> (B, T, D), hidden (B, T, d_hidden)."""

    def __init__(
        self, d_model: int, d_hidden: int, *, activation: str = "gelu", bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        _check_sizes(d_model, d_hidden, dropout)
        self.fc_in = nn.Linear(d_model, d_hidden, bias=bias)
        self.act = ACTIVATIONS.get(activation)()
        self.dropout = nn.Dropout(dropout)
        self.fc_out = nn.Linear(d_hidden, d_model, bias=bias)

    @classmethod
    def linear_shapes(cls, d_model: int, d_hidden: int) -> list[tuple[str, int, int]]:
        """Its linear layers as (name, d_in, d_out), in order."""
        return [("fc_in", d_model, d_hidden), ("fc_out", d_hidden, d_model)]

    def forward(
        self, x: torch.Tensor, *, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        hidden = self.act(self.fc_in(x))  # (B, T, d_hidden)
        y = self.fc_out(self.dropout(hidden))
        return (y, hidden) if return_hidden else y


class GatedMLP(nn.Module):
    """Gated linear unit y = w_down(act(w_gate x) * w_up x); (B, T, D) -> (B, T, D), hidden (B, T, d_hidden)."""

    def __init__(
        self, d_model: int, d_hidden: int, *, activation: str = "silu", bias: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        _check_sizes(d_model, d_hidden, dropout)
        self.w_gate = nn.Linear(d_model, d_hidden, bias=bias)
        self.w_up = nn.Linear(d_model, d_hidden, bias=bias)
        self.act = ACTIVATIONS.get(activation)()
        self.dropout = nn.Dropout(dropout)
        self.w_down = nn.Linear(d_hidden, d_model, bias=bias)

    @classmethod
    def linear_shapes(cls, d_model: int, d_hidden: int) -> list[tuple[str, int, int]]:
        """Its linear layers as (name, d_in, d_out), in order."""
        return [("w_gate", d_model, d_hidden), ("w_up", d_model, d_hidden), ("w_down", d_hidden, d_model)]

    def forward(
        self, x: torch.Tensor, *, return_hidden: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        hidden = self.act(self.w_gate(x)) * self.w_up(x)  # (B, T, d_hidden)
        y = self.w_down(self.dropout(hidden))
        return (y, hidden) if return_hidden else y


@FEEDFORWARDS.register("swiglu")
class SwiGLU(GatedMLP):
    """GatedMLP with silu (Llama)."""

    def __init__(self, d_model: int, d_hidden: int, *, bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__(d_model, d_hidden, activation="silu", bias=bias, dropout=dropout)


@FEEDFORWARDS.register("geglu")
class GeGLU(GatedMLP):
    """GatedMLP with gelu."""

    def __init__(self, d_model: int, d_hidden: int, *, bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__(d_model, d_hidden, activation="gelu", bias=bias, dropout=dropout)


def build_feedforward(
    name: str, d_model: int, d_hidden: int, *, activation: str = "gelu", bias: bool = True, dropout: float = 0.0
) -> nn.Module:
    """The feed-forward registered as `name` ("mlp" | "swiglu" | "geglu").

    `activation` applies to "mlp" only; the gated variants are named after their fixed activation.
    """
    make = FEEDFORWARDS.get(name)
    if make is MLP:
        return MLP(d_model, d_hidden, activation=activation, bias=bias, dropout=dropout)
    return make(d_model, d_hidden, bias=bias, dropout=dropout)
