"""Benchmark: training tokens/s of the gpt2-style decoder vs transformers' GPT2LMHeadModel, and MFU.

Both models have the GPT-2 vocabulary and block layout at reduced width/depth and the same weights
(`bench.generation.build_pair`); one training step is forward + backward + AdamW step (torch's fused
AdamW, as the Trainer uses, with the same settings for both) on the same batch of B x T random token
ids, float32, CPU:
    fmblocks   our Decoder, targets = the next tokens (T predictions per row)
    hf         GPT2LMHeadModel(labels=input_ids) (it shifts internally: T - 1 predictions per row)
    trainer    our Decoder through fmblocks' Trainer.fit (data stream, schedule, clipping, logging)
    <model>-bf16, <model>-compile, <model>-compile-bf16   (model: fmblocks or hf)
               the same step under bf16 autocast and/or torch.compile (the compile is the warm-up step; where
               the compiler fails the row is eager and says so under "compile_fallback"); "best_vs_best_hf"
               compares the fastest setting of each
    ddp-2, fsdp-2
               Trainer.fit under `torchrun --nproc_per_node 2` (1 thread each), strategy ddp or fsdp: wall
               seconds per step of rank 0 (communication waits are not CPU time); tokens/s and MFU per the
               2 processes' combined ceiling (2 x the 1-thread matmul ceiling)
The steps of fmblocks and hf alternate; their figures are the best of `steps` timed steps after a
warm-up step (the median is recorded too); the trainer's is the mean over `steps` steps of one fit
after a warm-up step. Time is the process CPU time on `threads` threads (default 1: it then equals
the compute time and is robust to other load on the machine); wall time is recorded too.

MFU (model FLOPs utilisation) = achieved FLOP/s / ceiling. Model FLOPs per step = 3 x the forward
matrix-product FLOPs of `fmblocks.cost.model_costs` (backward ~ 2 x forward); the ceiling is the
best FLOP/s of a 2048 x 2048 x 2048 float32 matmul measured on the same threads in the same run, so
the bf16 rows, whose products run in bfloat16 (AMX/AVX512-BF16 where the CPU has them), can exceed 100 %.
Writes bench/results/training.json and training.png.

    .venv/bin/python -m bench.training [--d-model 256 --layers 4 --heads 4 --seq 128 --batch 8] [--steps 8]
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.generation import build_pair
from fmblocks.cost import model_costs
from fmblocks.files import write_bytes, write_json
from fmblocks.training import CausalLMWindows, TrainConfig, Trainer

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = [("", False, False), ("-bf16", True, False), ("-compile", False, True), ("-compile-bf16", True, True)]
MATMUL = 2048


def timed(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def matmul_ceiling(repeats: int = 5) -> float:
    """Best float32 FLOP/s of an n x n by n x n product (2 n^3 FLOPs), by CPU time."""
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b)[0] for _ in range(repeats))
    return 2 * MATMUL**3 / best


def step_function(model: torch.nn.Module, batch: torch.Tensor, *, hf: bool, bf16: bool = False,
                  forward=None):
    """One training step of `model` on `batch` (B, T + 1) with torch's AdamW (`forward`: a compiled model)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (B, T) each
    forward = model if forward is None else forward

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = forward(input_ids=inputs, labels=inputs).loss if hf else forward(inputs, targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def trainer_seconds(config, batch: int, seq: int, steps: int) -> tuple[float, float]:
    """(CPU, wall) seconds per step of Trainer.fit on a stream of random ids, after one warm-up step."""
    from fmblocks.models import build_model

    ids = torch.randint(0, config.vocab_size, ((steps + 1) * batch * seq + 1,))
    train = TrainConfig(steps=steps + 1, batch_size=batch, warmup_steps=1, eval_every=0, log_every=steps + 1,
                        progress=False)
    trainer = Trainer(build_model(config), CausalLMWindows(ids, seq), config=train)
    trainer.fit(stop_at=1)
    cpu, wall = timed(trainer.fit)
    return cpu / steps, wall / steps


def distributed_seconds(args: argparse.Namespace, strategy: str) -> float:
    """Wall seconds per step of Trainer.fit under torchrun with 2 processes and `strategy` (rank 0's)."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "seconds.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                   "bench.training", "--worker", strategy, str(result), "--d-model", str(args.d_model), "--layers",
                   str(args.layers), "--heads", str(args.heads), "--seq", str(args.seq), "--batch", str(args.batch),
                   "--steps", str(args.steps)]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())["seconds_per_step"]


def worker(args: argparse.Namespace) -> None:
    """Under torchrun: time Trainer.fit with strategy args.worker[0]; rank 0 writes args.worker[1]."""
    from fmblocks.models import build_model
    from fmblocks.training.distributed import shutdown

    torch.set_num_threads(1)
    ours, _ = build_pair(args.d_model, args.layers, args.heads, args.seq)
    ids = torch.randint(0, ours.config.vocab_size, ((args.steps + 1) * args.batch * args.seq + 1,),
                        generator=torch.Generator().manual_seed(0))
    train = TrainConfig(steps=args.steps + 1, batch_size=args.batch, warmup_steps=1, eval_every=0,
                        log_every=args.steps + 1, progress=False, strategy=args.worker[0])
    trainer = Trainer(build_model(ours.config), CausalLMWindows(ids, args.seq), config=train)
    trainer.fit(stop_at=1)
    _, wall = timed(trainer.fit)
    if trainer.dist.is_main:
        Path(args.worker[1]).write_text(json.dumps({"seconds_per_step": wall / args.steps}))
    shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-distributed", action="store_true", help="skip the 2-process ddp and fsdp rows")
    parser.add_argument("--worker", nargs=2, metavar=("STRATEGY", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours, hf = build_pair(args.d_model, args.layers, args.heads, args.seq)
    config = ours.config
    batch = torch.randint(0, config.vocab_size, (args.batch, args.seq + 1))
    with torch.no_grad():
        logits_gap = (ours(batch[:, :-1]).logits - hf(input_ids=batch[:, :-1]).logits).abs().max().item()
    ours.train(), hf.train()
    models = {"fmblocks": ours, "hf": hf}
    steps, fallback = {}, {}
    for suffix, bf16, compile_ in SETTINGS:
        for prefix, model in models.items():
            forward = torch.compile(model) if compile_ else None
            steps[prefix + suffix] = step_function(model, batch, hf=prefix == "hf", bf16=bf16, forward=forward)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for name, step in tqdm(steps.items(), desc="warm-up and compile"):
        try:
            step()  # warm-up: allocations, optimizer state, compilation
        except Exception as err:  # noqa: BLE001 - the compiler failed: time that row in eager mode
            fallback[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            prefix = name.split("-")[0]
            steps[name] = step_function(models[prefix], batch, hf=prefix == "hf", bf16=name.endswith("bf16"))
            steps[name]()
    for _ in tqdm(range(args.steps), desc="training steps"):
        for name, step in steps.items():
            times[name].append(timed(step))
    trainer_cpu, trainer_wall = trainer_seconds(config, args.batch, args.seq, args.steps)
    ceiling = matmul_ceiling()

    tokens = args.batch * args.seq
    flops = 3 * sum(cost.flops for cost in model_costs(config, args.seq, batch=args.batch))
    results = {}
    for name, cpu, wall in [(n, min(c for c, _ in t), min(w for _, w in t)) for n, t in times.items()] + [
            ("trainer", trainer_cpu, trainer_wall)]:
        results[name] = {"seconds_per_step_cpu": cpu, "seconds_per_step_wall": wall, "tokens_per_s": tokens / cpu,
                         "tokens_per_s_wall": tokens / wall, "mfu": flops / cpu / ceiling}
    for name, measured in times.items():
        results[name]["tokens_per_s_median"] = tokens / statistics.median(c for c, _ in measured)
    if args.threads == 1 and not args.no_distributed:
        for strategy in ("ddp", "fsdp"):
            wall = distributed_seconds(args, strategy)
            results[f"{strategy}-2"] = {"seconds_per_step_wall": wall, "tokens_per_s_wall": tokens / wall,
                                        "tokens_per_s": tokens / wall, "mfu": flops / wall / (2 * ceiling)}
    document = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__, "matmul_ceiling_gflops": ceiling / 1e9},
        "model": {"d_model": args.d_model, "layers": args.layers, "heads": args.heads, "vocab": config.vocab_size,
                  "seq": args.seq, "batch": args.batch, "params": sum(p.numel() for p in ours.parameters())},
        "train_gflops_per_step": flops / 1e9,
        "logits_max_abs_diff_same_weights": logits_gap,
        "results": results,
        "compile_fallback": fallback,
        "speedup_vs_hf": results["fmblocks"]["tokens_per_s"] / results["hf"]["tokens_per_s"],
        "best_vs_best_hf": max(results["fmblocks" + suffix]["tokens_per_s"] for suffix, _, _ in SETTINGS)
        / max(results["hf" + suffix]["tokens_per_s"] for suffix, _, _ in SETTINGS),
        "trainer_vs_hf": results["trainer"]["tokens_per_s"] / results["hf"]["tokens_per_s"],
    }
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "training.json", document, fmt="fmblocks-bench-training")
    plot(results, RESULTS / "training.png", title=f"{args.layers} layers, d={args.d_model}, B={args.batch}, "
         f"T={args.seq}, {args.threads} thread(s)")
    for name, row in results.items():
        print(f"{name:>21}: {row['tokens_per_s']:8.0f} tokens/s  MFU {100 * row['mfu']:.1f} %"
              + (f"  (eager: {fallback[name]})" if name in fallback else ""))
    print(f"fmblocks / hf = {document['speedup_vs_hf']:.2f}x (best / best {document['best_vs_best_hf']:.2f}x); matmul ceiling {ceiling / 1e9:.1f} GFLOP/s; "
          f"same-weights logits gap {logits_gap:.1e}")


def plot(results: dict, path: Path, *, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot()
    names = list(results)
    bars = axes.bar(names, [results[n]["tokens_per_s"] for n in names], color=[f"C{i}" for i in range(len(names))])
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes.margins(y=0.15)
    axes.bar_label(bars, labels=[f"MFU {100 * results[n]['mfu']:.0f}%" for n in names])
    axes.set_ylabel("training tokens/s (CPU time; ddp/fsdp: wall)")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
