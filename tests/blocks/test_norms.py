"""LayerNorm and RMSNorm: hand-worked values, fast path = reference path, parity with torch.nn, invariances."""

import math

import pytest
import torch

from fmblocks.blocks.norms import NORMS, LayerNorm, RMSNorm, build_norm, layer_norm_reference, rms_norm_reference
from fmblocks.errors import ConfigError, ShapeError, UnknownNameError


def test_layer_norm_hand_worked() -> None:
    # x = [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    norm = LayerNorm(4, eps=1e-5)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = torch.tensor([d / math.sqrt(1.25 + 1e-5) for d in (-1.5, -0.5, 0.5, 1.5)])
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer_norm_reference(x, norm.weight, norm.bias, norm.eps), expected, atol=1e-6, rtol=0)


def test_rms_norm_hand_worked() -> None:
    # x = [3, 4]: mean square (9 + 16) / 2 = 12.5
    norm = RMSNorm(2, eps=1e-6)
    x = torch.tensor([3.0, 4.0])
    rms = math.sqrt(12.5 + 1e-6)
    expected = torch.tensor([3.0 / rms, 4.0 / rms])
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(rms_norm_reference(x, norm.weight, norm.eps), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_fast_path_equals_reference(bias: bool) -> None:
    norm = LayerNorm(48, bias=bias)
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_()
    x = (torch.randn(3, 7, 48) * 4 + 2).requires_grad_()
    fast, ref = norm(x), layer_norm_reference(x, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-6)
    grad = torch.randn_like(fast)
    fast_grads = torch.autograd.grad(fast, [x, *norm.parameters()], grad)
    ref_grads = torch.autograd.grad(ref, [x, *norm.parameters()], grad)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rms_norm_fast_path_equals_reference() -> None:
    norm = RMSNorm(48)
    with torch.no_grad():
        norm.weight.normal_()
    x = (torch.randn(3, 7, 48) * 3).requires_grad_()
    fast, ref = norm(x), rms_norm_reference(x, norm.weight, norm.eps)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-6)
    grad = torch.randn_like(fast)
    fast_grads = torch.autograd.grad(fast, [x, norm.weight], grad)
    ref_grads = torch.autograd.grad(ref, [x, norm.weight], grad)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fast_paths_keep_half_precision_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(4, 32).to(dtype)
    for norm in (LayerNorm(32), RMSNorm(32)):
        expected = norm(x.float())
        y = norm.to(dtype)(x)
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), expected, atol=2e-2, rtol=2e-2)


def test_layer_norm_matches_torch() -> None:
    ours, ref = LayerNorm(16, eps=1e-5), torch.nn.LayerNorm(16, eps=1e-5)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 16) * 4 + 2
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer_norm_reference(x, ours.weight, ours.bias, ours.eps), ref(x), atol=1e-5, rtol=1e-5)


def test_layer_norm_without_bias_matches_torch() -> None:
    ours, ref = LayerNorm(8, bias=False), torch.nn.LayerNorm(8, bias=False)
    assert ours.bias is None
    x = torch.randn(4, 8)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer_norm_reference(x, ours.weight, None, ours.eps), ref(x), atol=1e-5, rtol=1e-5)


def test_rms_norm_matches_torch() -> None:
    ours, ref = RMSNorm(16, eps=1e-6), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 16) * 3
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rms_norm_reference(x, ours.weight, ours.eps), ref(x), atol=1e-5, rtol=1e-5)


def test_layer_norm_output_is_standardised() -> None:
    y = LayerNorm(64)(torch.randn(10, 64) * 7 + 3)
    torch.testing.assert_close(y.mean(-1), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(10), atol=1e-3, rtol=0)


def test_norms_are_scale_invariant() -> None:
    x = torch.randn(4, 32)
    for norm in (LayerNorm(32, eps=1e-12), RMSNorm(32, eps=1e-12)):
        torch.testing.assert_close(norm(5.0 * x), norm(x), atol=1e-5, rtol=1e-5)


def test_build_norm_by_name() -> None:
    assert NORMS.names() == ["layer", "rms"]
    assert isinstance(build_norm("rms", 8, eps=1e-5), RMSNorm)
    assert build_norm("rms", 8, eps=1e-5).eps == 1e-5
    assert build_norm("layer", 8).eps == 1e-5


def test_bad_input() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown norm 'batch'; known: layer, rms"):
        build_norm("batch", 8)
    with pytest.raises(ShapeError, match=r"expected input \(\.\.\., 8\), got \(2, 7\)"):
        LayerNorm(8)(torch.randn(2, 7))
    with pytest.raises(ConfigError, match="eps must be > 0"):
        RMSNorm(8, eps=0.0)
