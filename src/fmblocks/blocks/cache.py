"""Decoding state kept between calls: growing sequence buffers, the KV cache, and one cache per layer.

    SequenceBuffer   a tensor (..., S, C) grown along S by `append` (in place, doubling capacity)
    KVCache          keys and values (B, H_kv, S, Dh) of attention, as two buffers
    WindowKVCache    the same for sliding-window attention, holding only the last `keep` positions (bounded memory)
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


class WindowKVCache:
    """Keys and values of the last `keep` positions only (sliding-window attention with window keep + 1).

    `append(k, v)` returns the kept positions followed by the new ones (what this call's queries may
    see), then keeps the last `keep`; `length` still counts every position seen, so positions go on.
    """

    def __init__(self, keep: int) -> None:
        self.keep, self.length = keep, 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v (B, H_kv, T, Dh); returns (B, H_kv, min(held, keep) + T, Dh) keys and values."""
        if self.k is not None and (k.shape[:2] != self.k.shape[:2] or k.shape[-1] != self.k.shape[-1]):
            raise ShapeError(f"WindowKVCache holds k {tuple(self.k.shape)}; cannot append k {tuple(k.shape)}")
        k_all = k if self.k is None else torch.cat([self.k, k], dim=-2)
        v_all = v if self.v is None else torch.cat([self.v, v], dim=-2)
        self.length += k.shape[-2]
        start = max(k_all.shape[-2] - self.keep, 0)
        self.k, self.v = k_all[..., start:, :], v_all[..., start:, :]
        return k_all, v_all


@dataclass
class LayerCache:
    """One block's decoding state: its mixer's (`mixer`) and its cross-attention's (`cross`, or None)."""

    mixer: Any
    cross: KVCache | None = None

    @property
    def length(self) -> int:
        """Positions the layer has seen (0 for a mixer that keeps no state)."""
        return 0 if self.mixer is None else self.mixer.length
