"""What a run costs, said before it starts, and how fast it goes, said while it runs.

    summary = run_summary(model_config, train_config, seq_len=128, device=torch.device("cpu"))
    print(format_summary(summary))
    mfu(summary, seconds_per_step=0.05, peak=1e12)     # the share of the peak the run achieves

Parameters and forward FLOPs are `fmblocks.cost.model_costs`'s formulas (checked against the built modules
by the cost tests). Embedding parameters are the lookup tables (components under `embed.`: tokens,
positions, token types; a tied LM head shares the token table and counts there); the rest are
non-embedding. Tokens per step = batch_size x grad_accum x seq_len (seq_len: the data's sequence length,
padding included). Training FLOPs per step = 3 x the forward FLOPs of the global batch: the backward
pass costs about twice the forward (one matrix product for the gradient of the activations and one for
the weights, per forward product). Only matrix products count (see `fmblocks.cost`); optimizer, norms and
softmax are left out, so the figure is a slight under-count.

MFU (model FLOPs utilisation) is an estimate: achieved FLOP/s (training FLOPs per step / seconds per
step) divided by a peak that is a datasheet or rule-of-thumb figure, not a measurement. Pass the peak of
your hardware as `TrainConfig.peak_flops` (`--peak-flops`); otherwise `default_peak_flops` uses
    CUDA    the dense bf16/fp16 tensor-core peak of the GPUs in PEAK_FLOPS, matched by name (fp32 runs read
            lower against it, as they use a fraction of those units); an unknown GPU shows no MFU
    CPU     CPU_PEAK_PER_THREAD = 1e11 FLOP/s per torch thread (an AVX2/AVX-512 core at ~3 GHz with two
            fused multiply-add units does 0.1-0.2 TFLOP/s in fp32), times torch.get_num_threads()
"""

from dataclasses import dataclass
from typing import Any

import torch

# dense bf16/fp16 tensor-core peaks (FLOP/s) from the vendors' datasheets; the first name found in the device name wins
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
              "4090": 165e12, "3090": 71e12, "V100": 125e12, "T4": 65e12}
CPU_PEAK_PER_THREAD = 1e11


@dataclass(frozen=True)
class RunSummary:
    """The figures printed when a run starts."""

    embedding_params: int
    non_embedding_params: int
    tokens_per_step: int
    flops_per_step: int  # training: 3 x forward
    device: str
    precision: str
    strategy: str
    world_size: int
    peak_flops: float | None  # FLOP/s the MFU divides by (None: unknown)

    @property
    def params(self) -> int:
        return self.embedding_params + self.non_embedding_params


def default_peak_flops(device: torch.device) -> float | None:
    """The documented default peak FLOP/s of `device` (see the module docstring); None where unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)
    if device.type == "cpu":
        return CPU_PEAK_PER_THREAD * torch.get_num_threads()
    return None


def run_summary(model_config: Any, train_config: Any, *, seq_len: int | None = None, device: torch.device,
                world_size: int = 1, strategy: str | None = None) -> RunSummary:
    """The summary of training a `model_config` model with `train_config` on sequences of `seq_len` tokens."""
    from fmblocks.cost import model_costs

    examples = train_config.batch_size * train_config.grad_accum
    seq_len = seq_len or getattr(model_config, "max_len", None)
    costs = model_costs(model_config, seq_len, batch=examples)
    embedding = sum(c.params for c in costs if c.component.startswith("embed."))
    peak = train_config.peak_flops or default_peak_flops(device)
    if peak and not train_config.peak_flops:
        peak *= world_size  # the default is per process
    strategy = strategy or (getattr(train_config, "strategy", "ddp") if world_size > 1 else "single process")
    return RunSummary(embedding, sum(c.params for c in costs) - embedding, examples * seq_len,
                      3 * sum(c.flops for c in costs), str(device), train_config.precision, strategy, world_size,
                      peak)


def mfu(summary: RunSummary, seconds_per_step: float, peak: float | None = None) -> float | None:
    """Achieved training FLOP/s over the peak (`peak`, else the summary's); None without a peak."""
    peak = peak or summary.peak_flops
    if not peak or seconds_per_step <= 0:
        return None
    return summary.flops_per_step / seconds_per_step / peak


def format_summary(summary: RunSummary) -> str:
    """The summary as a few aligned lines."""
    processes = f" x {summary.world_size} processes" if summary.world_size > 1 else ""
    peak = f"{summary.peak_flops:.3g} FLOP/s" if summary.peak_flops else "unknown (pass --peak-flops)"
    rows = [
        ("parameters", f"{_count(summary.params)} ({_count(summary.embedding_params)} embedding, "
                       f"{_count(summary.non_embedding_params)} non-embedding)"),
        ("tokens per step", f"{summary.tokens_per_step:,}"),
        ("FLOPs per step", f"{summary.flops_per_step:.3g} (training = 3 x forward, fmblocks.cost formulas)"),
        ("device", f"{summary.device}{processes}"),
        ("precision", summary.precision),
        ("strategy", summary.strategy),
        ("peak for MFU", f"{peak} (an estimate)"),
    ]
    return "\n".join(f"{name:>16}: {value}" for name, value in rows)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
