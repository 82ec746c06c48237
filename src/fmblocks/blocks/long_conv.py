"""Block 4 · long convolutions: an attention-free token mixer for DNA-length input (H3 / Hyena style).

    fft_causal_conv(x, h):  y[:, t, c] = sum_{tau=0..t} h[c, tau] x[:, t - tau, c]      (B, T, D) -> (B, T, D)
        by FFT in O(T log T); equals a direct depthwise conv1d (`causal_conv_direct`, O(T L)).
    LongConvolution:  that convolution with a learned kernel h (D, max_len).
    LongConvMixer ("long-conv" in MIXERS), gated (Fu et al., 2023, H3; Poli et al., 2023, Hyena):
        [v, g] = in_proj(x),   y = out_proj(g * (h * v))          in_proj: D -> 2D, out_proj: D -> D
        Causal whatever `causal` says (an output reads only earlier inputs), in encoders too. Its mixing
        weights are W[b, c, t, s] = g[b, t, c] h[c, t - s] (s <= t), one "head" per channel, and
        y = out_proj(W v). Only key-padding masks (..., 1, S) apply: padded inputs are zeroed. A cache
        (`new_cache()`) holds the history of v for step-by-step decoding.
Limits: the kernel has max_len taps, so T (cached positions included) <= max_len.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.cache import SequenceBuffer
from fmblocks.blocks.mixers import MIXERS, MixerSpec, check_self_mixing
from fmblocks.errors import ConfigError, ShapeError


def _check_conv(x: torch.Tensor, kernel: torch.Tensor) -> None:
    if x.dim() != 3 or kernel.dim() != 2 or x.shape[-1] != kernel.shape[0]:
        raise ShapeError(
            f"causal convolution expects x (B, T, D) and kernel (D, L); got x {tuple(x.shape)}, "
            f"kernel {tuple(kernel.shape)}"
        )


def fft_causal_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y[:, t, c] = sum_{tau <= t} kernel[c, tau] x[:, t - tau, c] by FFT, O(T log T); (B, T, D) -> (B, T, D)."""
    _check_conv(x, kernel)
    t = x.shape[1]
    kernel = kernel[:, :t]  # taps beyond T never reach an output
    n = 1 << (t + kernel.shape[1] - 1).bit_length()  # FFT size >= full linear convolution length
    dtype = torch.promote_types(x.dtype, torch.float32)  # no FFTs in half precision
    x_f = torch.fft.rfft(x.transpose(1, 2).to(dtype), n=n)  # (B, D, n/2 + 1)
    k_f = torch.fft.rfft(kernel.to(dtype), n=n)  # (D, n/2 + 1)
    y = torch.fft.irfft(x_f * k_f, n=n)[..., :t]  # (B, D, T): the causal part of the linear convolution
    return y.transpose(1, 2).to(x.dtype)  # (B, T, D)


def causal_conv_direct(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Reference: the same causal convolution as a depthwise conv1d over left-padded input, O(T L)."""
    _check_conv(x, kernel)
    length = kernel.shape[1]
    padded = F.pad(x.transpose(1, 2), (length - 1, 0))  # (B, D, L - 1 + T)
    weight = kernel.flip(-1)[:, None, :]  # (D, 1, L): conv1d correlates, so flip to convolve
    return F.conv1d(padded, weight, groups=x.shape[-1]).transpose(1, 2)  # (B, T, D)


class LongConvolution(nn.Module):
    """Causal long convolution token mixer y = h * x per channel, by FFT; (B, T, D) -> (B, T, D), T <= max_len.

    The kernel h (D, max_len) is learned; it starts as noise under exponential decays whose rates are
    log-spaced across channels (from ~1/max_len to 1), so channels begin with memories of many lengths.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        if d_model < 1 or max_len < 1:
            raise ConfigError(f"LongConvolution needs positive d_model and max_len, got {d_model}, {max_len}")
        self.d_model, self.max_len = d_model, max_len
        rates = torch.logspace(-math.log10(max_len), 0.0, d_model)[:, None]  # (D, 1)
        decay = torch.exp(-rates * torch.arange(max_len))  # (D, L)
        self.kernel = nn.Parameter(torch.randn(d_model, max_len) * decay * rates.sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] > self.max_len:
            expected = f"(B, T <= {self.max_len}, {self.d_model})"
            raise ShapeError(f"LongConvolution expects x {expected}, got {tuple(x.shape)}")
        return fft_causal_conv(x, self.kernel)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


def keep_keys(mask: torch.Tensor | None, batch: int, s: int, *, mixer: str = "long-conv") -> torch.Tensor | None:
    """A boolean key-padding mask broadcastable to (B, 1, 1, S) as (B, S) floats; ConfigError (naming
    `mixer`) for any other mask: convolutions have no per-query masks."""
    if mask is None:
        return None
    if mask.dtype != torch.bool or (mask.dim() >= 2 and mask.shape[-2] != 1) or (mask.dim() >= 3 and mask.shape[-3] != 1):
        raise ConfigError(f"the {mixer} mixer supports only a boolean key-padding mask (B, 1, 1, S); "
                          f"got a {mask.dtype} mask of shape {tuple(mask.shape)}")
    return mask.reshape(-1, mask.shape[-1]).expand(batch, s).float()  # (B, S)


@MIXERS.register("long-conv")
class LongConvMixer(nn.Module):
    """Gated causal long convolution y = out_proj(g * (h * v)), [v, g] = in_proj(x); (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, max_len: int, *, bias: bool = True) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.in_proj = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.conv = LongConvolution(d_model, max_len)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    @classmethod
    def option_names(cls, spec: MixerSpec) -> list[str]:
        return []

    @classmethod
    def from_spec(cls, spec: MixerSpec, *, positional: nn.Module | None = None) -> "LongConvMixer":
        """Positions are not used: the kernel is indexed by distance, so order is built in."""
        return cls(spec.d_model, spec.max_len, bias=spec.bias)

    def new_cache(self) -> SequenceBuffer:
        return SequenceBuffer()

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        causal: bool = False,
        positions: torch.Tensor | None = None,
        cache: SequenceBuffer | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_self_mixing("long-conv", x, self.d_model, context)
        b, t, _ = x.shape
        v, g = self.in_proj(x).chunk(2, dim=-1)  # (B, T, D) each
        s = t + (0 if cache is None else cache.length)
        keep = keep_keys(mask, b, s)  # (B, S) or None
        if keep is not None:
            v = v * keep[:, -t:, None].to(v.dtype)  # padded positions feed nothing forward
        history = v if cache is None else cache.append(v)  # (B, S, D)
        if history.shape[1] > self.max_len:
            raise ShapeError(f"long-conv reads at most max_len={self.max_len} positions, got {history.shape[1]}")
        mixed = fft_causal_conv(history, self.conv.kernel)[:, -t:]  # (B, T, D)
        y = self.out_proj(g * mixed)
        return (y, self.weights(g, s, keep)) if return_weights else y

    def weights(self, g: torch.Tensor, s: int, keep: torch.Tensor | None) -> torch.Tensor:
        """W[b, c, t, s'] = g[b, t, c] h[c, t + S - T - s'] for s' <= t + S - T, else 0; (B, D, T, S)."""
        t = g.shape[1]
        lag = torch.arange(s - t, s, device=g.device)[:, None] - torch.arange(s, device=g.device)  # (T, S)
        taps = self.conv.kernel[:, lag.clamp(min=0)] * (lag >= 0)  # (D, T, S)
        weights = g.transpose(1, 2)[..., None] * taps  # (B, D, T, 1) * (D, T, S) -> (B, D, T, S)
        return weights if keep is None else weights * keep[:, None, None, :].to(weights.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"
