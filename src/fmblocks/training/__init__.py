"""Training: the trainer (checkpoint/resume, locks, progress, logs, plots), datasets, torchrun DDP and FSDP.

    from fmblocks.training import Trainer, TrainConfig, CausalLMWindows, load_checkpoint
    history = Trainer(model, CausalLMWindows(ids, 64), config=TrainConfig(steps=100), out_dir="run").fit()
    model, model_config, state = load_checkpoint("run")

The names below load their module on first use, so `fmblocks.training.config` (no torch) stays light
for the command line's `--help`.
"""

import importlib
from typing import Any

_HOME = {
    "CorruptCheckpointError": "fmblocks.errors", "load_checkpoint": "fmblocks.training.checkpoint",
    "load_weights": "fmblocks.training.checkpoint", "save_checkpoint": "fmblocks.training.checkpoint",
    "TrainConfig": "fmblocks.training.config", "CausalLMWindows": "fmblocks.training.datasets",
    "DictDataset": "fmblocks.training.datasets", "MaskedLMDataset": "fmblocks.training.datasets",
    "mask_tokens": "fmblocks.training.datasets", "learning_rate": "fmblocks.training.schedule",
    "Trainer": "fmblocks.training.trainer", "build_optimizer": "fmblocks.training.trainer",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
