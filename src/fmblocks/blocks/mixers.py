"""Block 4 · token mixers: the lecture's context-mixing operator, one call contract, one registry.

Every mixer is an nn.Module registered in MIXERS by name and called as

    y = mixer(x, context=None, mask=None, *, causal=False, positions=None, cache=None, return_weights=False)

    x (B, T, D) -> y (B, T, D)
    context    (B, S, Dc) for mixers that can read another sequence (cross-attention), else refused
    mask       broadcastable to (B, H, T, S), True = may mix (see attention.py); S = cached + T
    positions  (T,) or (B, T) position of each query (default: cache.length .. cache.length + T - 1)
    cache      the mixer's own decoding state from `mixer.new_cache()` (KVCache, input history, ...)
    return_weights  also return the mixing weights (B, H, T, S) computed by the same operator that
               produced y, so that inspecting a model never changes it

and built from the model's sizes by `build_mixer(name, spec, positional=scheme, **options)`, which calls
the class's `from_spec(spec, positional=..., **options)` after checking `options` against its
`option_names(spec)`. Register your own mixer with `@MIXERS.register("name")` on a class that has these
three methods (`from_spec`, `option_names`, `new_cache`) and the call above.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import Registry, check_options


@dataclass(frozen=True)
class MixerSpec:
    """The model-level sizes and choices a mixer may need (each mixer reads the ones it uses)."""

    d_model: int
    n_heads: int
    n_kv_heads: int | None = None
    max_len: int = 0
    bias: bool = True
    qkv_bias: bool | None = None  # biases on the q/k/v projections of attention (None = `bias`; Qwen2: True)
    dropout: float = 0.0
    core: str = "sdpa"  # the attention core of attention-based mixers
    d_context: int | None = None  # cross-attention: the context's width (None = d_model)


class Mixer(Protocol):
    """What a registered mixer provides (see the module docstring for the call contract)."""

    @classmethod
    def option_names(cls, spec: MixerSpec) -> list[str]: ...

    @classmethod
    def from_spec(cls, spec: MixerSpec, *, positional: nn.Module | None = None, **options: Any) -> nn.Module: ...

    def new_cache(self) -> Any: ...

    def __call__(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
        causal: bool = False, positions: torch.Tensor | None = None, cache: Any = None, return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


MIXERS: Registry[type[Mixer]] = Registry("mixer")


def build_mixer(name: str, spec: MixerSpec, *, positional: nn.Module | None = None, **options: Any) -> nn.Module:
    """The mixer registered as `name`; an option it does not know -> ConfigError listing the known ones."""
    mixer = MIXERS.get(name)
    check_options(f"mixer {name!r}", options, mixer.option_names(spec))
    return mixer.from_spec(spec, positional=positional, **options)


def check_self_mixing(name: str, x: torch.Tensor, d_model: int, context: torch.Tensor | None) -> None:
    """ShapeError unless x is (B, T, d_model); ConfigError when a mixer that reads only x is given a context."""
    if context is not None:
        raise ConfigError(f"the {name} mixer cannot read a context (use cross-attention)")
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ShapeError(f"{name} expects x (B, T, {d_model}), got {tuple(x.shape)}")
