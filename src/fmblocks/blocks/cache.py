"""Decoding state kept between calls: growing sequence buffers, the KV cache, and one cache per layer.

    SequenceBuffer   a tensor (..., S, C) grown along S by `append` (in place, doubling capacity)
    KVCache          keys and values (B, H_kv, S, Dh) of attention, as two buffers
    LayerCache       what one block keeps: `mixer` (its token mixer's state: a KVCache, a long
                     convolution's input history, ...) and `cross` (the cross-attention KVCache, or None)

A mixer makes its own state with `new_cache()`; a stack's `new_caches()` returns one LayerCache per layer.
`length` is the number of positions seen so far.
"""

from dataclasses import dataclass
from typing import Any

import torch

from fmblocks.errors import ShapeError


class SequenceBuffer:
    """A tensor (..., S, C) grown along S by `append`.

    It lives in a buffer with spare room along S that doubles when full, so a step of generation writes
    its new positions in place instead of copying everything (O(T) amortised, not O(T^2) over a
    sequence). Under autograd (an input that requires grad) it concatenates instead, because later
    in-place writes would invalidate tensors saved for backward.
    """

    def __init__(self) -> None:
        self._data: torch.Tensor | None = None  # (..., capacity, C)
        self.length = 0

    @property
    def value(self) -> torch.Tensor | None:
        """The positions appended so far (..., S, C), or None before the first append."""
        return None if self._data is None else self._data[..., : self.length, :]

    def append(self, x: torch.Tensor) -> torch.Tensor:
        """Add x (..., T, C) after the held positions; returns all of them (..., S + T, C)."""
        if self._data is not None and (x.shape[:-2] != self._data.shape[:-2] or x.shape[-1] != self._data.shape[-1]):
            raise ShapeError(f"buffer holds {tuple(self.value.shape)}; cannot append {tuple(x.shape)} "
                             "(expected the same leading and last dims)")
        end = self.length + x.shape[-2]
        if torch.is_grad_enabled() and x.requires_grad:
            self._data = x if self._data is None else torch.cat([self.value, x], dim=-2)
        else:
            if self._data is None or end > self._data.shape[-2]:
                self._data = self._grown(x, end)
            self._data[..., self.length : end, :] = x
        self.length = end
        return self.value

    def _grown(self, new: torch.Tensor, needed: int) -> torch.Tensor:
        """A buffer with room for max(needed, 2 x the capacity) positions, holding the current ones."""
        capacity = max(needed, 2 * (0 if self._data is None else self._data.shape[-2]))
        grown = new.new_empty(*new.shape[:-2], capacity, new.shape[-1])
        if self.length:
            grown[..., : self.length, :] = self.value
        return grown


class KVCache:
    """Keys and values of the positions seen so far, k and v (B, H_kv, S, Dh), grown by `append`."""

    def __init__(self) -> None:
        self._k, self._v = SequenceBuffer(), SequenceBuffer()

    @property
    def length(self) -> int:
        return self._k.length

    @property
    def k(self) -> torch.Tensor | None:
        return self._k.value

    @property
    def v(self) -> torch.Tensor | None:
        return self._v.value

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v (B, H_kv, T, Dh) after the cached positions; returns all keys and values (B, H_kv, S+T, Dh)."""
        if k.shape[:-1] != v.shape[:-1] or (self.k is not None and (k.shape[:2] != self.k.shape[:2] or k.shape[-1]
                                                                    != self.k.shape[-1] or v.shape[-1] != self.v.shape[-1])):
            held = "nothing" if self.k is None else f"k {tuple(self.k.shape)}, v {tuple(self.v.shape)}"
            raise ShapeError(f"KVCache holds {held}; cannot append k {tuple(k.shape)}, v {tuple(v.shape)} "
                             "(expected same B, H_kv, T and head dims)")
        return self._k.append(k), self._v.append(v)


@dataclass
class LayerCache:
    """One block's decoding state: its mixer's (`mixer`) and its cross-attention's (`cross`, or None)."""

    mixer: Any
    cross: KVCache | None = None

    @property
    def length(self) -> int:
        """Positions the layer has seen (0 for a mixer that keeps no state)."""
        return 0 if self.mixer is None else self.mixer.length
