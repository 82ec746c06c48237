"""Activations and feed-forwards: parity with torch.nn.functional, hand-worked MLP/SwiGLU, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from fmblocks.blocks.feedforward import (
    ACTIVATIONS,
    FEEDFORWARDS,
    MLP,
    GatedMLP,
    build_feedforward,
)
from fmblocks.errors import ConfigError, UnknownNameError

X = torch.linspace(-8, 8, 1001)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("relu", F.relu),
        ("gelu", F.gelu),
        ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
        ("silu", F.silu),
    ],
)
def test_activations_match_torch(name: str, reference) -> None:
    x = X.clone().requires_grad_()
    y = ACTIVATIONS.get(name)()(x)
    torch.testing.assert_close(y, reference(X), atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(y.sum(), x)
    x_ref = X.clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(reference(x_ref).sum(), x_ref)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-5)


def _set(linear: torch.nn.Linear, weight: list, bias: list | None = None) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if bias is not None:
            linear.bias.copy_(torch.tensor(bias))


def test_mlp_hand_worked() -> None:
    mlp = MLP(2, 2, activation="relu")
    _set(mlp.fc_in, [[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0])
    _set(mlp.fc_out, [[1.0, 1.0], [2.0, 0.0]], [0.5, 0.0])
    # x = [1, 2]: fc_in -> [1, -2], relu -> [1, 0], fc_out -> [1 + 0 + 0.5, 2 + 0] = [1.5, 2]
    y, hidden = mlp(torch.tensor([[[1.0, 2.0]]]), return_hidden=True)
    torch.testing.assert_close(hidden, torch.tensor([[[1.0, 0.0]]]))
    torch.testing.assert_close(y, torch.tensor([[[1.5, 2.0]]]))


def test_swiglu_hand_worked() -> None:
    swiglu = build_feedforward("swiglu", 2, 2, bias=False)
    assert isinstance(swiglu, GatedMLP)
    _set(swiglu.w_gate, [[1.0, 0.0], [0.0, 1.0]])
    _set(swiglu.w_up, [[2.0, 0.0], [0.0, 2.0]])
    _set(swiglu.w_down, [[1.0, 0.0], [0.0, 1.0]])
    # x = [1, -1]: silu(x) * 2x = [2 sigma(1), 2 sigma(-1)] (silu(-1) * -2 = 2 sigma(-1))
    sigma = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    y = swiglu(torch.tensor([[[1.0, -1.0]]]))
    torch.testing.assert_close(y, torch.tensor([[[2 * sigma(1.0), 2 * sigma(-1.0)]]]))


def test_mlp_matches_torch_sequential() -> None:
    mlp = MLP(8, 32, activation="gelu")
    ref = torch.nn.Sequential(mlp.fc_in, torch.nn.GELU(), mlp.fc_out)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(mlp(x), ref(x))


@pytest.mark.parametrize("name", ["mlp", "swiglu", "geglu"])
def test_feedforward_is_position_wise(name: str) -> None:
    ffn = build_feedforward(name, 8, 16)
    x = torch.randn(2, 6, 8)
    perm = torch.randperm(6)
    y, hidden = ffn(x, return_hidden=True)
    assert hidden.shape == (2, 6, 16)
    torch.testing.assert_close(ffn(x[:, perm]), y[:, perm])


def test_registry_and_activation_choice() -> None:
    assert FEEDFORWARDS.names() == ["geglu", "mlp", "swiglu"]
    assert ACTIVATIONS.names() == ["gelu", "gelu_tanh", "relu", "silu"]
    assert type(build_feedforward("geglu", 4, 8).act).__name__ == "GELU"
    assert type(build_feedforward("mlp", 4, 8, activation="silu").act).__name__ == "SiLU"
    assert build_feedforward("mlp", 4, 8, bias=False).fc_in.bias is None


def test_bad_input() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown feed-forward 'moe'; known: geglu, mlp, swiglu"):
        build_feedforward("moe", 4, 8)
    with pytest.raises(UnknownNameError, match=r"unknown activation 'tanh'; known: gelu, gelu_tanh, relu, silu"):
        build_feedforward("mlp", 4, 8, activation="tanh")
    with pytest.raises(ConfigError, match="sizes must be positive"):
        MLP(4, 0)
