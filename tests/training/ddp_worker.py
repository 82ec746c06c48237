"""The run of the DDP test: `python ddp_worker.py OUT_DIR`, alone or under torchrun (same command).

A tiny decoder on seeded random tokens, 4 steps of a global batch of 4 x 2 accumulated micro-batches,
evaluated every 2 steps; the checkpoint and log land in OUT_DIR.
"""

import sys

import torch

from fmblocks.models import build_model, preset
from fmblocks.training import CausalLMWindows, TrainConfig, Trainer
from fmblocks.training.distributed import shutdown


def run(out_dir: str) -> list[dict]:
    torch.set_num_threads(1)
    ids = torch.randint(0, 24, (600,), generator=torch.Generator().manual_seed(0))
    config = preset("gpt2-style", vocab_size=24, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16)
    torch.manual_seed(0)
    model = build_model(config)
    # eps=1e-4: Adam would otherwise turn float noise in ~0 gradients (key biases) into lr-sized steps
    train = TrainConfig(steps=4, batch_size=4, grad_accum=2, lr=1e-2, eps=1e-4, warmup_steps=1, log_every=1,
                        eval_every=2, eval_batches=0, progress=False)
    trainer = Trainer(model, CausalLMWindows(ids[:500], 16, stride=8), eval_data=CausalLMWindows(ids[500:], 16),
                      config=train, out_dir=out_dir)
    return trainer.fit()


if __name__ == "__main__":
    run(sys.argv[1])
    shutdown()
