"""Benchmark: `prepare` throughput on 1 and 2 processes, and the trainer's memory and start-up on prepared data.

Corpora are generated text (never committed): files of about 1 MB of words drawn with Zipf-like
weights from the words of the pydoc topics, in a work directory (default /tmp/fmblocks-bench-data).
    prepare    MB/s of source text (wall time of `prepare` with the GPT-2 tokenizer), with workers=1 and
               workers=2, on the small corpus; and on 2 workers for the large one
    train      a tiny decoder (2 layers, d=64, context 128, GPT-2 vocabulary) trained `steps` steps
               in a fresh process on each prepared corpus: time from the process start to the end of
               its first step, peak resident memory (ru_maxrss) and anonymous memory (RssAnon: what
               the process itself allocated, without the shards' file pages) at the end
Writes bench/results/data.json.

    .venv/bin/python -m bench.data [--small-mb 20 --large-mb 200] [--steps 20] [--work DIR]
"""

import argparse
import itertools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SRC = str(Path(__file__).resolve().parents[1] / "src")

TRAIN_CHILD = """
import time; start = time.perf_counter()
import json, resource, sys
import torch
from fmblocks.data.shards import open_prepared
from fmblocks.models import build_model, preset
from fmblocks.training import TrainConfig, Trainer
torch.set_num_threads(1)
prepared = open_prepared(sys.argv[1])
train, _ = prepared.windows(128)
config = preset("gpt2-style", vocab_size=prepared.index["tokenizer"]["vocab_size"], n_layers=2, d_model=64,
                n_heads=2, d_ff=256, max_len=128)
trainer = Trainer(build_model(config), train, config=TrainConfig(steps=int(sys.argv[2]), batch_size=8, progress=False))
trainer.fit(stop_at=1)
first = time.perf_counter() - start
trainer.fit()
anon = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon"))
print(json.dumps({"windows": len(train), "first_step_s": first, "peak_rss_mb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_anon_mb": anon / 1024}))
"""


def generate(folder: Path, megabytes: float, seed: int) -> int:
    """Files of ~1 MB of generated text in `folder`; returns the bytes written."""
    from pydoc_data.topics import topics

    words = sorted(set(re.findall(r"[A-Za-z]+", " ".join(topics.values()))))
    rng = random.Random(seed)
    rng.shuffle(words)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
    folder.mkdir(parents=True, exist_ok=True)
    total, number = 0, 0
    while total < megabytes * 2**20:
        drawn = rng.choices(words, cum_weights=cumulative, k=12 * 14_000)
        data = "\n".join(" ".join(drawn[i : i + 12]) + "." for i in range(0, len(drawn), 12)).encode()
        (folder / f"part-{number:05d}.txt").write_bytes(data)
        total, number = total + len(data), number + 1
    return total


def timed_prepare(corpus: Path, out: Path, workers: int) -> dict:
    from fmblocks.data.prepare import prepare
    from fmblocks.tokenizers import load

    shutil.rmtree(out, ignore_errors=True)
    tokenizer = load("gpt2")
    start = time.perf_counter()
    index = prepare([corpus], tokenizer, out, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    source = sum(p.stat().st_size for p in corpus.iterdir())
    return {"workers": workers, "source_mb": source / 2**20, "tokens": index["tokens"], "seconds": seconds,
            "mb_per_s": source / 2**20 / seconds}


def train_figures(data: Path, steps: int) -> dict:
    result = subprocess.run([sys.executable, "-c", TRAIN_CHILD, str(data), str(steps)], check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-mb", type=float, default=20)
    parser.add_argument("--large-mb", type=float, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fmblocks-bench-data"))
    args = parser.parse_args()
    from fmblocks.files import write_json

    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "prepare": [],
                     "train": {}}
    for name, megabytes, seed in (("small", args.small_mb, 1), ("large", args.large_mb, 2)):
        corpus = args.work / f"{name}-corpus"
        if not corpus.is_dir():
            generate(corpus, megabytes, seed)
    for workers in (1, 2):
        results["prepare"].append({"corpus": "small", **timed_prepare(args.work / "small-corpus",
                                                                      args.work / "small-data", workers)})
        print(results["prepare"][-1], flush=True)
    results["prepare"].append({"corpus": "large", **timed_prepare(args.work / "large-corpus",
                                                                  args.work / "large-data", 2)})
    print(results["prepare"][-1], flush=True)
    one, two = results["prepare"][0]["mb_per_s"], results["prepare"][1]["mb_per_s"]
    results["prepare_speedup_2_over_1"] = two / one
    for name in ("small", "large"):
        results["train"][name] = {"source_mb": next(r["source_mb"] for r in results["prepare"] if r["corpus"] == name),
                                  **train_figures(args.work / f"{name}-data", args.steps)}
        print(name, results["train"][name], flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "data.json", results, fmt="fmblocks-bench-data")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
