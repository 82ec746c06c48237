"""Block 4 · a FlexAttention core: the sparse patterns of efficient.py through torch's block-sparse kernel.

`torch.nn.attention.flex_attention` (PyTorch 2.5+) computes softmax(q k^T * scale + M) v where M comes
from a `mask_mod(b, h, i, j) -> bool`; `create_block_mask` records which (128 x 128) tiles hold any
visible pair, and the kernel skips the empty tiles. Two patterns, the same as the sparse cores':

    "local-global"     |i - j| <= window, or i or j among the first n_global positions (SparseCore)
    "sliding-window"   i - window < j <= i under causal, |i - j| < window otherwise (SlidingWindowCore)

Queries are the last T of S positions, as everywhere. Block masks are built once per (T, S, causal,
device) and kept. With `compile=True` (the default) the kernel is torch.compile'd (the first call per
shape compiles, ~15 s on a CPU, through inductor's C++ backend); `compile=False` runs the eager kernel,
slow but the same function. A user mask or dropout is not expressed as a mask_mod, and torch has no
FlexAttention backward on the CPU: those calls (a mask, dropout, CPU inputs that need gradients) go to
`sparse_attention`, the same function. Measured (bench/attention.py, fp32, 1 thread, T = 4096, window 128):
0.5-0.8x SparseCore's time without causal masking; causal, 0.8-1.0x at T <= 2048 and 1.4x (slower) at 4096.
"""

import torch

from fmblocks.blocks.attention import ATTENTION_CORES, check_inputs
from fmblocks.blocks.efficient import SparseCore, _check_int
from fmblocks.errors import ConfigError

PATTERNS = ("local-global", "sliding-window")


@ATTENTION_CORES.register("flex")
class FlexCore(SparseCore):
    """FlexAttention on the `pattern` ("local-global" | "sliding-window") with `window` and `n_global`."""

    def __init__(self, *, pattern: str = "local-global", window: int = 64, n_global: int = 1,
                 compile: bool = True) -> None:
        if pattern not in PATTERNS:
            raise ConfigError(f"flex attention pattern {pattern!r} is unknown; known: {', '.join(PATTERNS)}")
        _check_int("flex", "window", window, 1 if pattern == "sliding-window" else 0)
        sliding = pattern == "sliding-window"
        super().__init__(window=window - 1 if sliding else window, n_global=0 if sliding else n_global)
        self.pattern_name, self.compile = pattern, compile
        self._block_masks: dict[tuple, object] = {}

    def _block_mask(self, t: int, s: int, causal: bool, device: torch.device):
        key = (t, s, causal, str(device))
        if key not in self._block_masks:
            from torch.nn.attention.flex_attention import create_block_mask

            offset, window, n_global = s - t, self.window, self.n_global

            def visible(b, h, i, j):  # i: query index, j: key index; the query sits at i + offset
                pos = i + offset
                seen = ((pos - j).abs() <= window) | (j < n_global) | (pos < n_global)
                return seen & (j <= pos) if causal else seen

            self._block_masks[key] = create_block_mask(visible, None, None, t, s, device=device)
        return self._block_masks[key]

    def __call__(self, q, k, v, mask=None, *, causal=False, scale=None, dropout_p=0.0) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
        if mask is not None or dropout_p > 0 or (needs_grad and q.device.type == "cpu"):
            return super().__call__(q, k, v, mask, causal=causal, scale=scale, dropout_p=dropout_p)
        check_inputs(q, k, v, mask)
        if not needs_grad:  # torch refuses CPU inputs that merely could need gradients
            q, k, v = q.detach(), k.detach(), v.detach()
        return _kernel(self.compile)(q, k, v, block_mask=self._block_mask(q.shape[-2], k.shape[-2], causal, q.device),
                                     scale=scale)


_KERNELS: dict[bool, object] = {}


def _kernel(compiled: bool):
    """flex_attention, torch.compile'd once per process when `compiled`."""
    if compiled not in _KERNELS:
        from torch.nn.attention.flex_attention import flex_attention

        _KERNELS[compiled] = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention
    return _KERNELS[compiled]
