"""Block 4 · the Hyena operator (Poli et al., 2023, "Hyena Hierarchy", Def. 3.1 and Sec. 3.3): an attention-free
token mixer of order N built from gates and implicit long convolutions, O(T log T) in length.

    u = short_conv(in_proj(x))          in_proj: D -> (N+1) D; short_conv: depthwise causal, k taps (default 3)
    [v, x^1, ..., x^N] = split(u)       (B, T, D) each: a value and N data-controlled gates
    z^1 = v,   z^{n+1} = x^n ⊙ (h^n * z^n)   (n = 1..N),   y = out_proj(z^{N+1})

h^n * z is the causal long convolution of each channel (fft_causal_conv from long_conv.py). The filters are
implicit: h^n[c, τ] = MLP(f(τ))[n, c] · window_c(τ) + b^n_c [τ = 0], where
    f(τ)       positional features of the lag τ: τ/P, cos(2π k τ/P), sin(2π k τ/P), k = 1..K (P = max_len)
    MLP        F -> M -> M -> N·D, sine activations sin(ω ⊙ a) with learned frequencies ω (F = 2K + 1)
    window_c   exp(-α_c τ/P) / ||exp(-α_c · /P)||_2 over P taps; α_c log-spaced over channels in
               [ln(100)/1.5, ln(100)/0.3] (channels forget at different speeds). Dividing by the norm over all
               P taps (a constant per channel) keeps the filter's gain independent of max_len; our choice,
               not the paper's.
    b^n        a learned per-channel skip (the paper's bias term), added at lag 0
so the parameter count does not grow with the filter length, and filter taps depend only on τ (never on T).

Options (`mixer_options`): order N (2), filter_hidden M (64), filter_features F (5, odd >= 3), short_kernel k (3).

Causal whatever `causal` says (encoders too), like "long-conv". Only key-padding masks (..., 1, S) apply:
padded positions are zeroed before the short convolution and after every stage, so they feed nothing.
Mixing weights: the operator is linear in v for fixed gates, z^{N+1} = W v with, per channel c,
    W_c = diag(x^N_c) H^N_c ... diag(x^1_c) H^1_c     (H^n_c the lower-triangular Toeplitz matrix of h^n_c)
returned as (B, D, T, S), so that y = out_proj(einsum("bcts,bsc->btc", W, v)) (v after the short
convolution). A cache (`new_cache()`) holds the history of in_proj(x); each decoding step recomputes the
operator over it (O(S log S) per step, like "long-conv").
Limits: T (cached positions included) <= max_len; return_weights costs O(B D S^2) memory.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fmblocks.blocks.cache import SequenceBuffer
from fmblocks.blocks.long_conv import causal_conv_direct, fft_causal_conv, keep_keys
from fmblocks.blocks.mixers import MIXERS, MixerSpec, check_self_mixing
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import check_options

DEFAULTS: dict[str, int] = {"order": 2, "filter_hidden": 64, "filter_features": 5, "short_kernel": 3}


def hyena_options(**options: Any) -> dict[str, int]:
    """DEFAULTS updated by `options`, checked (ConfigError naming the bad one); unknown names are refused."""
    check_options("mixer 'hyena'", options, list(DEFAULTS))
    sizes = {**DEFAULTS, **options}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"hyena option {name} must be a positive integer, got {value!r}")
    if sizes["filter_features"] < 3 or sizes["filter_features"] % 2 == 0:
        raise ConfigError(f"hyena option filter_features must be odd and >= 3 (τ/P plus cos/sin pairs), "
                          f"got {sizes['filter_features']}")
    return sizes


def positional_features(length: int, max_len: int, n_features: int, *, device: Any = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """f(τ) for τ = 0..length-1: [τ/P, cos(2πkτ/P), sin(2πkτ/P) for k = 1..K]; (length, 2K + 1)."""
    lag = torch.arange(length, device=device, dtype=dtype)[:, None] / max_len  # (L, 1)
    angle = 2 * math.pi * lag * torch.arange(1, (n_features - 1) // 2 + 1, device=device)  # (L, K)
    return torch.cat([lag, angle.cos(), angle.sin()], dim=-1)


def decay_window(length: int, max_len: int, d_model: int, *, device: Any = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """exp(-α_c τ/P) over τ < length, divided by its L2 norm over all P taps; (D, length)."""
    rates = torch.logspace(math.log10(math.log(100) / 1.5), math.log10(math.log(100) / 0.3), d_model,
                           device=device, dtype=dtype)[:, None]  # (D, 1)
    lag = torch.arange(length, device=device, dtype=dtype)
    ratio = torch.exp(-2 * rates / max_len)  # (D, 1): the squared window's geometric ratio
    norm = ((1 - ratio**max_len) / (1 - ratio)).sqrt()  # sqrt(sum_{τ<P} ratio^τ)
    return torch.exp(-rates * lag / max_len) / norm


class HyenaFilter(nn.Module):
    """The implicit filters h^1..h^N: `filter(length)` -> (N, D, length); see the module docstring."""

    def __init__(self, d_model: int, order: int, max_len: int, *, hidden: int = 64, features: int = 5) -> None:
        super().__init__()
        self.d_model, self.order, self.max_len, self.features = d_model, order, max_len, features
        self.fc_in = nn.Linear(features, hidden)
        self.freq_in = nn.Parameter(torch.ones(hidden))
        self.fc_hidden = nn.Linear(hidden, hidden)
        self.freq_hidden = nn.Parameter(torch.ones(hidden))
        self.fc_out = nn.Linear(hidden, order * d_model, bias=False)
        self.bias = nn.Parameter(torch.randn(order, d_model))  # the skip term b^n, added at lag 0

    def forward(self, length: int) -> torch.Tensor:
        where = {"device": self.fc_out.weight.device, "dtype": self.fc_out.weight.dtype}
        f = positional_features(length, self.max_len, self.features, **where)  # (L, F)
        a = torch.sin(self.freq_in * self.fc_in(f))  # (L, M)
        a = torch.sin(self.freq_hidden * self.fc_hidden(a))  # (L, M)
        h = self.fc_out(a).T.reshape(self.order, self.d_model, length)  # (L, N·D) -> (N, D, L)
        h = h * decay_window(length, self.max_len, self.d_model, **where)
        return torch.cat([h[..., :1] + self.bias[..., None], h[..., 1:]], dim=-1)  # the skip at lag 0

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, order={self.order}, max_len={self.max_len}, features={self.features}"


class ShortConv(nn.Module):
    """Depthwise causal convolution with k taps and a bias per channel; (B, T, C) -> (B, T, C)."""

    def __init__(self, channels: int, taps: int, *, bias: bool = True) -> None:
        super().__init__()
        bound = 1 / math.sqrt(taps)
        self.weight = nn.Parameter(torch.empty(channels, taps).uniform_(-bound, bound))  # weight[c, τ]
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = causal_conv_direct(x, self.weight)
        return y if self.bias is None else y + self.bias


def hyena_recurrence(v: torch.Tensor, gates: list[torch.Tensor], kernels: torch.Tensor, keep: torch.Tensor | None,
                     conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = fft_causal_conv) -> torch.Tensor:
    """z^1 = v, z^{n+1} = x^n ⊙ (h^n * z^n), padded positions zeroed after every stage; v, x^n (B, S, D),
    kernels (N, D, L) -> z^{N+1} (B, S, D). `conv` is the causal convolution (FFT, or causal_conv_direct)."""
    z = v if keep is None else v * keep[..., None]
    for gate, kernel in zip(gates, kernels):
        z = gate * conv(z, kernel)
        if keep is not None:
            z = z * keep[..., None]
    return z


@MIXERS.register("hyena")
class HyenaMixer(nn.Module):
    """The Hyena operator of order N, y = out_proj(x^N ⊙ (h^N * ... x^1 ⊙ (h^1 * v))); (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, max_len: int, *, order: int = 2, filter_hidden: int = 64,
                 filter_features: int = 5, short_kernel: int = 3, bias: bool = True) -> None:
        super().__init__()
        hyena_options(order=order, filter_hidden=filter_hidden, filter_features=filter_features,
                      short_kernel=short_kernel)
        if d_model < 1 or max_len < 1:
            raise ConfigError(f"the hyena mixer needs positive d_model and max_len, got {d_model}, {max_len}")
        self.d_model, self.max_len, self.order = d_model, max_len, order
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model, bias=bias)
        self.short_conv = ShortConv((order + 1) * d_model, short_kernel, bias=bias)
        self.filter = HyenaFilter(d_model, order, max_len, hidden=filter_hidden, features=filter_features)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    @classmethod
    def option_names(cls, spec: MixerSpec) -> list[str]:
        return list(DEFAULTS)

    @classmethod
    def from_spec(cls, spec: MixerSpec, *, positional: nn.Module | None = None, **options: Any) -> "HyenaMixer":
        """Positions are not used: the filters are functions of the lag, so order is built in."""
        return cls(spec.d_model, spec.max_len, bias=spec.bias, **hyena_options(**options))

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
        check_self_mixing("hyena", x, self.d_model, context)
        b, t, _ = x.shape
        s = t + (0 if cache is None else cache.length)
        if s > self.max_len:
            raise ShapeError(f"hyena reads at most max_len={self.max_len} positions, got {s}")
        keep = keep_keys(mask, b, s, mixer="hyena")  # (B, S) or None
        projected = self.in_proj(x)  # (B, T, (N+1) D)
        if keep is not None:
            projected = projected * keep[:, -t:, None].to(projected.dtype)
        history = projected if cache is None else cache.append(projected)  # (B, S, (N+1) D)
        v, *gates = self.short_conv(history).chunk(self.order + 1, dim=-1)  # (B, S, D) each
        kernels = self.filter(s)  # (N, D, S)
        z = hyena_recurrence(v, gates, kernels, keep)  # (B, S, D)
        y = self.out_proj(z[:, -t:])
        return (y, self.weights(gates, kernels, keep)[:, :, -t:]) if return_weights else y

    @staticmethod
    def weights(gates: list[torch.Tensor], kernels: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """W = diag(x^N) H^N ... diag(x^1) H^1 per channel (padded rows and columns zeroed); (B, D, S, S)."""
        s = kernels.shape[-1]
        lag = torch.arange(s, device=kernels.device)[:, None] - torch.arange(s, device=kernels.device)  # (S, S)
        weights = None
        for gate, kernel in zip(gates, kernels):
            toeplitz = kernel[:, lag.clamp(min=0)] * (lag >= 0)  # (D, S, S): H[c, t, s] = h[c, t - s]
            mixed = toeplitz if weights is None else toeplitz @ weights  # (D, S, S) or (B, D, S, S)
            row = gate.transpose(1, 2) if keep is None else gate.transpose(1, 2) * keep[:, None, :]  # (B, D, S)
            weights = row[..., None] * mixed
        return weights if keep is None else weights * keep[:, None, None, :].to(weights.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, order={self.order}"
