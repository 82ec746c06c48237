"""Stopping a training run cleanly: SIGINT (Ctrl-C) and SIGTERM end it at the next step boundary.

    with StopSignals(announce=True) as stop:
        for step in ...:
            ...one optimizer step...
            if stop.requested(dist):      # every process agrees, so DDP ranks stop at the same step
                save a checkpoint; raise TrainingInterrupted(...)

While active, the first SIGINT or SIGTERM only records the signal (and says so on stderr); a second
SIGINT raises KeyboardInterrupt at once, for a step that takes too long. The previous handlers come
back on exit. Outside the main thread signals cannot be caught, and nothing is installed.
"""

import signal
import sys
import threading
from types import FrameType

import torch

from fmblocks.training.distributed import DistContext, all_sum

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Record SIGINT/SIGTERM for `requested()` instead of dying mid-step; see the module docstring."""

    def __init__(self, *, announce: bool = True) -> None:
        self.announce = announce
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._record) for number in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _record(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = number
        if self.announce:
            print(f"\n{signal.Signals(number).name}: stopping after this step and saving "
                  "(Ctrl-C again stops at once, unsaved)", file=sys.stderr, flush=True)

    def requested(self, context: DistContext) -> int | None:
        """The signal to stop on, if any process received one (the same answer on every process)."""
        if context.world_size == 1:
            return self.signal
        mine = torch.tensor([float(self.signal or 0)], dtype=torch.float64, device=context.device)
        if all_sum(mine, context).item() == 0:
            return None
        return self.signal or signal.SIGTERM  # received by another process (torchrun forwards to all)
