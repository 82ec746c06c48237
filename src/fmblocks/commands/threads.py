"""The `--threads` option shared by the commands that train: how many CPU threads torch may use."""

import argparse
import os

from fmblocks.errors import ConfigError


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all available, as nproc)")


def set_threads(threads: int | None) -> int:
    """torch threads = `threads`, by default the CPUs this process may run on (`nproc`); returns the number."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    return threads
