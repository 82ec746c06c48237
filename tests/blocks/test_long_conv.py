"""Long convolution: FFT equals the direct convolution; the kernel module is causal and checks its length."""

import math

import pytest
import torch

from fmblocks.blocks.long_conv import LongConvolution, causal_conv_direct, fft_causal_conv
from fmblocks.errors import ShapeError


def _assert_same(out: torch.Tensor, ref: torch.Tensor, inputs: list[torch.Tensor], atol: float) -> None:
    torch.testing.assert_close(out, ref, atol=atol, rtol=1e-5)
    grad_out = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out)):
        torch.testing.assert_close(g, r, atol=atol, rtol=1e-5)


def test_causal_conv_hand_worked() -> None:
    # kernel [1, 10, 100]: y_t = x_t + 10 x_{t-1} + 100 x_{t-2}
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1)
    kernel = torch.tensor([[1.0, 10.0, 100.0]])
    expected = [1.0, 12.0, 123.0, 234.0]
    assert causal_conv_direct(x, kernel).flatten().tolist() == pytest.approx(expected)
    assert fft_causal_conv(x, kernel).flatten().tolist() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("t", "length"), [(1, 1), (100, 100), (257, 64), (2048, 2048)])
def test_fft_conv_equals_direct_conv(t: int, length: int) -> None:
    x = torch.randn(1, t, 3, dtype=torch.float64, requires_grad=True)
    kernel = (torch.randn(3, length, dtype=torch.float64) / math.sqrt(length)).requires_grad_()
    _assert_same(fft_causal_conv(x, kernel), causal_conv_direct(x, kernel), [x, kernel], atol=1e-10)


def test_long_convolution_is_causal_and_checks_length() -> None:
    mixer = LongConvolution(4, 64)
    x = torch.randn(1, 64, 4)
    y = mixer(x)
    x2 = x.clone()
    x2[:, 40] += 1.0
    torch.testing.assert_close(mixer(x2)[:, :40], y[:, :40])
    torch.testing.assert_close(y, causal_conv_direct(x, mixer.kernel), atol=1e-5, rtol=1e-5)
    with pytest.raises(ShapeError, match=r"expects x \(B, T <= 64, 4\), got \(1, 65, 4\)"):
        mixer(torch.randn(1, 65, 4))
