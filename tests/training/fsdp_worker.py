"""The runs of the FSDP test: `python fsdp_worker.py ROOT` under torchrun (2 processes); `trainer` alone.

A tiny decoder (tied embeddings) on seeded random tokens: 4 steps of a global batch of 4 x 2 accumulated
micro-batches, evaluated every 2 steps on 5 windows (so the last eval batch leaves one process without
an example). Under torchrun, in ROOT:
    fsdp/           FSDP with activation checkpointing, fresh, 4 steps; fsdp-at-2/ is its checkpoint at step 2
    one-then-fsdp/  FSDP resuming ROOT/one-at-2 (a 1-process checkpoint the test wrote) for steps 3-4
    fsdp-then-ddp/  DDP resuming fsdp-at-2 for steps 3-4
"""

import shutil
import sys
from pathlib import Path

import torch

from fmblocks.models import build_model, preset
from fmblocks.training import CausalLMWindows, TrainConfig, Trainer
from fmblocks.training.distributed import barrier, shutdown


def trainer(out_dir: str | Path, *, strategy: str = "ddp", activation_checkpointing: bool = False) -> Trainer:
    torch.set_num_threads(1)
    ids = torch.randint(0, 24, (600,), generator=torch.Generator().manual_seed(0))
    config = preset("gpt2-style", vocab_size=24, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16)
    torch.manual_seed(0)
    model = build_model(config)
    # eps=1e-4: Adam would otherwise turn float noise in ~0 gradients (key biases) into lr-sized steps
    train = TrainConfig(steps=4, batch_size=4, grad_accum=2, lr=1e-2, eps=1e-4, warmup_steps=1, log_every=1,
                        eval_every=2, eval_batches=0, progress=False, strategy=strategy,
                        activation_checkpointing=activation_checkpointing)
    return Trainer(model, CausalLMWindows(ids[:500], 16, stride=8), eval_data=CausalLMWindows(ids[-81:], 16),
                   config=train, out_dir=out_dir)


def main(root: Path) -> None:
    fresh = trainer(root / "fsdp", strategy="fsdp", activation_checkpointing=True)
    fresh.fit(stop_at=2)
    if fresh.dist.is_main:
        shutil.copytree(root / "fsdp" / "checkpoint", root / "fsdp-at-2")
    barrier(fresh.dist)
    fresh.fit()
    for name, source, strategy in (("one-then-fsdp", "one-at-2", "fsdp"), ("fsdp-then-ddp", "fsdp-at-2", "ddp")):
        resumed = trainer(root / name, strategy=strategy)
        resumed.resume(root / source)
        resumed.fit()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    shutdown()
