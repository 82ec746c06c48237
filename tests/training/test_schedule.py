"""Warmup + cosine learning rate: hand-worked values, parity with torch's schedulers, shape of the curve."""

import math

import pytest
import torch

from fmblocks.training.schedule import learning_rate


def lr_at(step: int, **overrides: float) -> float:
    settings = {"lr": 1.0, "warmup_steps": 4, "total_steps": 12, "min_lr_ratio": 0.1, **overrides}
    return learning_rate(step, **settings)


def test_hand_worked_values() -> None:
    assert [lr_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4) == 1.0  # cos(0): the peak
    assert lr_at(8) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay: cos(pi/2) = 0
    assert lr_at(12) == pytest.approx(0.1)  # the floor, and it stays there
    assert lr_at(100) == pytest.approx(0.1)


def test_matches_torch_linear_then_cosine_schedulers() -> None:
    warmup, total, floor = 5, 40, 0.2
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    schedulers = torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1),
         torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=0.5 * floor)],
        milestones=[warmup],
    )
    for step in range(total):
        ours = learning_rate(step, lr=0.5, warmup_steps=warmup, total_steps=total, min_lr_ratio=floor)
        assert ours == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9), step
        optimizer.step()
        schedulers.step()


@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_rises_then_falls_and_stays_in_range(warmup: int) -> None:
    rates = [lr_at(s, warmup_steps=warmup, total_steps=30) for s in range(30)]
    peak = max(range(30), key=rates.__getitem__)
    assert peak <= warmup
    assert all(a <= b for a, b in zip(rates[:peak], rates[1 : peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))
    assert all(0.1 - 1e-12 <= r <= 1.0 for r in rates) and not any(math.isnan(r) for r in rates)
