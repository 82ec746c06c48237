"""Training: the trainer (checkpoint/resume, progress, logs, plots), datasets, torchrun DDP.

    from fmblocks.training import Trainer, TrainConfig, CausalLMWindows, load_checkpoint
    history = Trainer(model, CausalLMWindows(ids, 64), config=TrainConfig(steps=100), out_dir="run").fit()
    model, model_config, state = load_checkpoint("run")
"""

from fmblocks.training.checkpoint import CorruptCheckpointError, load_checkpoint, load_weights, save_checkpoint
from fmblocks.training.config import TrainConfig
from fmblocks.training.datasets import CausalLMWindows, DictDataset, MaskedLMDataset, mask_tokens
from fmblocks.training.schedule import learning_rate
from fmblocks.training.trainer import Trainer, build_optimizer

__all__ = [
    "CausalLMWindows", "CorruptCheckpointError", "DictDataset", "MaskedLMDataset", "TrainConfig", "Trainer",
    "build_optimizer", "learning_rate", "load_checkpoint", "load_weights", "mask_tokens", "save_checkpoint",
]
