"""TrainConfig: every knob of a training run as one typed, JSON-serialisable dataclass.

Batch arithmetic: one optimizer step consumes `batch_size * grad_accum` examples. `batch_size` is the
*global* micro-batch: under torchrun each of the W processes takes `batch_size / W` of it, so a run
gives the same updates whatever W is (W must divide `batch_size`).

Learning rate: linear warmup over `warmup_steps`, then cosine decay from `lr` to `lr * min_lr_ratio`
at `steps` (see `schedule.py`). `grad_clip <= 0` disables clipping; `eval_every = 0` evaluates only
at the end; `eval_batches = 0` evaluates on the whole eval set; `checkpoint_every = 0` writes a
checkpoint only at the end of `fit`.

Speed (see `speed.py`): `precision` is "fp32", "bf16" (autocast; CUDA and CPU) or "fp16" (autocast with
gradient scaling; CUDA only); `compile` runs the training forward through `torch.compile`, falling back to
eager with a message where the compiler is unavailable. `peak_flops` is the peak FLOP/s the MFU estimate of
the progress bar divides by (0: the default of the device, see `summary.py`). `activation_checkpointing`
recomputes each block's activations in backward instead of keeping them (less memory, ~1/3 more time).

Several processes (under torchrun): `strategy` "ddp" keeps a whole copy of the model in every process and
averages the gradients; "fsdp" shards the weights, gradients and optimizer state over the processes (one
FSDP2 unit per TransformerBlock, then the rest). Both give the same updates; alone, a process trains the
plain model whatever the strategy (see `distributed.py`).
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from fmblocks.configs import check_fields, config_from_dict
from fmblocks.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """Hyper-parameters of a run; see the module docstring for the batch and schedule semantics."""

    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 20
    checkpoint_every: int = 0
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    precision: str = "fp32"
    compile: bool = False
    peak_flops: float = 0.0
    activation_checkpointing: bool = False
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # JSON gives a list
            self.betas = tuple(self.betas)  # type: ignore[assignment]
        check_fields(self)
        positive = ("steps", "batch_size", "grad_accum", "log_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "checkpoint_every", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.weight_decay < 0 or self.eps <= 0:
            raise ConfigError("TrainConfig.weight_decay must be >= 0 and eps > 0")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TrainConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "fp16" and self.device.startswith(("cpu", "mps")):
            raise ConfigError(f"TrainConfig.precision 'fp16' needs a CUDA device (it relies on a GradScaler), "
                              f"got device {self.device!r}; use 'bf16' (or 'fp32') there")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"TrainConfig.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.peak_flops < 0:
            raise ConfigError(f"TrainConfig.peak_flops must be >= 0 (0: the device's default), got {self.peak_flops!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready data."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild from `to_dict()` output; unknown keys raise ConfigError naming the known ones."""
        return config_from_dict(cls, data)
