"""Block 2 · RoPE scaling: rotary frequencies stretched to reach past the trained context ("extrapolatable").

A rotary scheme rotates channel pair i by the angle m * theta_i, theta_i = base^(-2i/Dh) (positional.py).
A model trained on L positions has never seen the slow pairs turn further than L * theta_i; the scalings
below change theta (and optionally scale q and k by an attention factor a) so that longer inputs stay
in the trained range. `scaling` is a dict {"type": ..., options}; with factor s:

    linear  (position interpolation, Chen et al., 2023)   theta_i / s  (positions squeezed by s)
    dynamic (NTK-aware, "dynamic NTK")   for a sequence of n > L positions (n = largest position + 1)
            base' = base * (s n / L - (s - 1))^(Dh / (Dh - 2)), theta from base'; unchanged for n <= L
    yarn    (Peng et al., 2023)   per pair a blend of theta_i (fast pairs, extrapolated) and theta_i / s
            (slow pairs, interpolated) by a linear ramp between the pairs that turn beta_fast and
            beta_slow times within L; attention factor a = 0.1 ln(s) + 1 (or from mscale / mscale_all_dim)
    llama3  (Llama 3.1)   wavelengths 2 pi / theta_i longer than L / low_freq_factor are divided by s,
            shorter than L / high_freq_factor kept, those between smoothly interpolated

Options: linear: factor (original_max_len, the trained L, is kept for reference); dynamic: factor, original_max_len (= L); yarn: factor, original_max_len,
attention_factor, beta_fast (32), beta_slow (1), mscale, mscale_all_dim, truncate (True); llama3:
factor, original_max_len, low_freq_factor, high_freq_factor. The arithmetic follows transformers'
modeling_rope_utils operation for operation in float32, so that logits agree to rounding.
Limits: the rotated dimension is the whole head (no partial rotary); no LongRoPE.
"""

import math

import torch

from fmblocks.errors import ConfigError

REQUIRED = {"linear": ("factor",), "dynamic": ("factor", "original_max_len"),
            "yarn": ("factor", "original_max_len"),
            "llama3": ("factor", "original_max_len", "low_freq_factor", "high_freq_factor")}
OPTIONAL = {"linear": ("original_max_len",), "dynamic": (), "llama3": (),
            "yarn": ("attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate")}


def check_scaling(scaling: dict) -> dict:
    """A validated copy of a scaling dict; ConfigError naming the known types and options otherwise."""
    if not isinstance(scaling, dict) or scaling.get("type") not in REQUIRED:
        found = scaling.get("type") if isinstance(scaling, dict) else scaling
        raise ConfigError(f"unknown RoPE scaling type {found!r}; known: {', '.join(REQUIRED)}")
    kind = scaling["type"]
    missing = [name for name in REQUIRED[kind] if scaling.get(name) is None]
    unknown = sorted(set(scaling) - {"type", *REQUIRED[kind], *OPTIONAL[kind]})
    if missing or unknown:
        raise ConfigError(f"RoPE scaling {kind!r} needs {', '.join(REQUIRED[kind])} and takes "
                          f"{', '.join(OPTIONAL[kind]) or 'nothing else'}; missing {missing}, unknown {unknown}")
    if not float(scaling["factor"]) > 0:
        raise ConfigError(f"RoPE scaling factor must be > 0, got {scaling['factor']}")
    return dict(scaling)


def _theta(base: float | torch.Tensor, dim: int, device: torch.device | str | None) -> torch.Tensor:
    """1 / base^(2i/dim), i < dim/2, float32 (transformers' default inverse frequencies)."""
    exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    return 1.0 / (base ** exponent)


def _yarn(dim: int, base: float, s: dict, device: torch.device | str | None) -> tuple[torch.Tensor, float]:
    factor, length = s["factor"], s["original_max_len"]

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = s.get("attention_factor")
    if attention is None:
        attention = (mscale(factor, s["mscale"]) / mscale(factor, s["mscale_all_dim"])
                     if s.get("mscale") and s.get("mscale_all_dim") else mscale(factor))

    def pair_of(rotations: float) -> float:  # the pair index that turns `rotations` times within `length`
        return dim * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = pair_of(s.get("beta_fast") or 32), pair_of(s.get("beta_slow") or 1)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1).to(device)
    frequency = base ** (torch.arange(0, dim, 2, device=device).float() / dim)  # (dim/2,)
    keep = 1 - ramp  # 1 = extrapolate (fast pairs), 0 = interpolate (slow pairs)
    return (1.0 / (factor * frequency)) * (1 - keep) + (1.0 / frequency) * keep, float(attention)


def _llama3(dim: int, base: float, s: dict, device: torch.device | str | None) -> torch.Tensor:
    theta = _theta(base, dim, device)
    factor, length = s["factor"], s["original_max_len"]
    low, high = s["low_freq_factor"], s["high_freq_factor"]
    wavelength = 2 * math.pi / theta
    scaled = torch.where(wavelength > length / low, theta / factor, theta)
    smooth = (length / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelength < length / high) * ~(wavelength > length / low)
    return torch.where(medium, blended, scaled)


def rope_frequencies(
    dim: int, base: float, scaling: dict | None, *, seq_len: int = 0, device: torch.device | str | None = None
) -> tuple[torch.Tensor, float]:
    """(theta (dim/2,) float32, attention factor a) of rotary pairs under `scaling` (None = unscaled).

    `seq_len` (the largest position + 1) matters for "dynamic" only.
    """
    if scaling is None:
        return _theta(base, dim, device), 1.0
    kind = scaling["type"]
    if kind == "linear":
        return _theta(base, dim, device) / scaling["factor"], 1.0
    if kind == "dynamic":
        factor, length = scaling["factor"], scaling["original_max_len"]
        if seq_len <= length:
            return _theta(base, dim, device), 1.0
        n = torch.tensor(seq_len)
        stretched = base * ((factor * n / length) - (factor - 1)) ** (dim / (dim - 2))  # float32 as transformers
        return _theta(stretched.to(device), dim, device), 1.0
    if kind == "yarn":
        return _yarn(dim, base, scaling, device)
    return _llama3(dim, base, scaling, device), 1.0
