"""Learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter 2017, SGDR).

For optimizer step s = 0, 1, ..., S-1 with peak rate r, warmup W and floor m = r * min_lr_ratio:

    lr(s) = r * (s + 1) / W                                   s < W
    lr(s) = m + (r - m) * (1 + cos(pi * (s - W) / (S - W))) / 2   W <= s < S

so the first step already trains (lr = r / W), the peak r is reached at s = W - 1 or W, and the rate
ends near m. It is a pure function of the step, so resuming needs no scheduler state.
"""

import math


def learning_rate(step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """The rate for 0-based optimizer step `step` (see the module docstring)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    floor = lr * min_lr_ratio
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
