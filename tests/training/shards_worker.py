"""The run of the sharded-data DDP test: `python shards_worker.py DATA_DIR OUT_DIR`, alone or under torchrun.

A tiny decoder on windows streamed from a prepared directory: 2 steps, a checkpoint, then a fresh
Trainer resumes it to step 4. Every window index this process reads lands in OUT_DIR/read-<rank>.json.
"""

import json
import sys
from pathlib import Path

import torch

from fmblocks.data.shards import open_prepared
from fmblocks.models import build_model, preset
from fmblocks.training import TrainConfig, Trainer
from fmblocks.training.distributed import init_distributed, shutdown


class Recorded:
    """A dataset that notes the indices read from it."""

    def __init__(self, data, seen: list[int]) -> None:
        self.data, self.seen, self.max_length = data, seen, data.max_length

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        self.seen.append(index)
        return self.data[index]


def run(data_dir: str, out_dir: str) -> list[dict]:
    torch.set_num_threads(1)
    prepared = open_prepared(data_dir)
    windows, _ = prepared.windows(16)
    config = preset("gpt2-style", vocab_size=prepared.index["tokenizer"]["vocab_size"], d_model=32, n_layers=1,
                    n_heads=2, d_ff=64, max_len=16)
    train = TrainConfig(steps=4, batch_size=4, grad_accum=2, lr=1e-2, eps=1e-4, warmup_steps=1, log_every=1,
                        eval_every=0, progress=False)
    seen: list[int] = []
    torch.manual_seed(0)
    Trainer(build_model(config), Recorded(windows, seen), config=train, out_dir=out_dir).fit(stop_at=2)
    resumed = Trainer(build_model(config), Recorded(windows, seen), config=train, out_dir=out_dir)
    resumed.resume()
    history = resumed.fit()
    rank = init_distributed().rank
    (Path(out_dir) / f"read-{rank}.json").write_text(json.dumps(seen))
    return history


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
    shutdown()
