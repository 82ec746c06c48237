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
               the compiler fails the row is eager and says so under "fallback"); "best_vs_best_hf"
               compares the fastest setting of each
    ddp-2, fsdp-2
               Trainer.fit under `torchrun --nproc_per_node 2` (1 thread each), strategy ddp or fsdp: wall
               seconds per step of rank 0 (communication waits are not CPU time); tokens/s and MFU per the
               2 processes' combined ceiling (2 x the 1-thread matmul ceiling)
The steps of fmblocks and hf alternate; their figures are the best of `steps` timed steps after a
warm-up step (the median is recorded too); the trainer's is the mean over `steps` steps of one fit
after a warm-up step. Time is the process CPU time on `threads` threads (default 1: it then equals
the compute time and is robust to other load on the machine); wall time is recorded too.
`--settings` picks which of the four settings run; `--trainer-setting` the one of the trainer row
("trainer" + its suffix) and of ddp-2/fsdp-2.

`--device cuda` runs the same rows on the GPU (models, batch and Trainer on cuda:0) and writes
training-cuda.json/.png instead: time is then CUDA-event time around the step, between two
torch.cuda.synchronize() calls (CPU time means nothing there; the document's "clock" says which was
used); autocast is on device type cuda; `--sdpa flash` runs the bf16 rows under
sdpa_kernel(FLASH_ATTENTION) (a row where that, or the compiler, fails falls back to torch's default
kernels and then to eager, and says so under "fallback"); the ceiling is a 8192^3 bfloat16 matmul, so
the fp32 rows' MFU is against the bf16 ceiling too; "peak_step_mib" is torch.cuda.max_memory_allocated
during a step less what was allocated before it (activations, gradients, temporaries). ddp-2/fsdp-2
(nccl) run only where 2 GPUs exist; otherwise "skipped" says why.

MFU (model FLOPs utilisation) = achieved FLOP/s / ceiling. Model FLOPs per step = 3 x the forward
matrix-product FLOPs of `fmblocks.cost.model_costs` (backward ~ 2 x forward); the ceiling is the
best FLOP/s of a 2048 x 2048 x 2048 float32 matmul measured on the same threads in the same run, so
the bf16 rows, whose products run in bfloat16 (AMX/AVX512-BF16 where the CPU has them), can exceed 100 %.
Writes bench/results/training.json and training.png (training-cuda.* with --device cuda).

    .venv/bin/python -m bench.training [--d-model 256 --layers 4 --heads 4 --seq 128 --batch 8] [--steps 8]
    .venv/bin/python -m bench.training --device cuda --settings fp32 bf16 compile-bf16 --sdpa flash \
        --trainer-setting compile-bf16 --d-model 768 --layers 12 --heads 12 --seq 1024 --batch 8
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
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.generation import build_pair
from bench.measure import timed
from fmblocks.cost import model_costs
from fmblocks.files import write_bytes, write_json
from fmblocks.training import CausalLMWindows, TrainConfig, Trainer

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = [("", False, False), ("-bf16", True, False), ("-compile", False, True), ("-compile-bf16", True, True)]
SETTING_NAMES = {suffix.lstrip("-") or "fp32": suffix for suffix, _, _ in SETTINGS}  # "compile-bf16" -> suffix
CLOCKS = {"cpu": "process CPU time", "cuda": "CUDA events around the call, torch.cuda.synchronize() before and after"}
MATMUL = {"cpu": (2048, torch.float32), "cuda": (8192, torch.bfloat16)}


def matmul_ceiling(device: torch.device = torch.device("cpu"), repeats: int = 5) -> float:
    """Best FLOP/s of an n x n by n x n product (2 n^3 FLOPs) in MATMUL's dtype for the device, by its clock."""
    n, dtype = MATMUL[device.type]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, device)[0] for _ in range(repeats))
    return 2 * n**3 / best


def step_function(model: torch.nn.Module, batch: torch.Tensor, *, hf: bool, bf16: bool = False,
                  forward=None, flash: bool = False):
    """One training step of `model` on `batch` (B, T + 1) with torch's AdamW (`forward`: a compiled model),
    under autocast to bf16 on the batch's device type if `bf16`, with only the flash SDPA kernel if `flash`."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (B, T) each
    forward = model if forward is None else forward

    def step() -> None:
        with (torch.autocast(batch.device.type, dtype=torch.bfloat16) if bf16 else nullcontext(),
              sdpa_kernel(SDPBackend.FLASH_ATTENTION) if flash else nullcontext()):
            loss = forward(input_ids=inputs, labels=inputs).loss if hf else forward(inputs, targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def train_config(args: argparse.Namespace, **options) -> TrainConfig:
    """The TrainConfig of the trainer row (and of the ddp/fsdp workers): args.trainer_setting on args.device."""
    suffix = SETTING_NAMES[args.trainer_setting]
    return TrainConfig(steps=args.steps + 1, batch_size=args.batch, warmup_steps=1, eval_every=0,
                       log_every=args.steps + 1, progress=False, device=args.device,
                       precision="bf16" if suffix.endswith("bf16") else "fp32", compile="compile" in suffix, **options)


def trainer_seconds(config, args: argparse.Namespace) -> tuple[float, float]:
    """(device-clock, wall) seconds per step of Trainer.fit on a stream of random ids, after one warm-up step."""
    from fmblocks.models import build_model

    ids = torch.randint(0, config.vocab_size, ((args.steps + 1) * args.batch * args.seq + 1,))
    trainer = Trainer(build_model(config), CausalLMWindows(ids, args.seq), config=train_config(args))
    trainer.fit(stop_at=1)
    seconds, wall = timed(trainer.fit, trainer.dist.device)
    return seconds / args.steps, wall / args.steps


def distributed_seconds(args: argparse.Namespace, strategy: str) -> float:
    """Wall seconds per step of Trainer.fit under torchrun with 2 processes and `strategy` (rank 0's)."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "seconds.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                   "bench.training", "--worker", strategy, str(result), "--d-model", str(args.d_model), "--layers",
                   str(args.layers), "--heads", str(args.heads), "--seq", str(args.seq), "--batch", str(args.batch),
                   "--steps", str(args.steps), "--device", args.device, "--trainer-setting", args.trainer_setting]
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
    trainer = Trainer(build_model(ours.config), CausalLMWindows(ids, args.seq),
                      config=train_config(args, strategy=args.worker[0]))  # on cuda: cuda:LOCAL_RANK, nccl
    trainer.fit(stop_at=1)
    _, wall = timed(trainer.fit, trainer.dist.device)
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
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--settings", nargs="+", choices=list(SETTING_NAMES), default=list(SETTING_NAMES),
                        help="which settings of fmblocks and hf to run (default: all four)")
    parser.add_argument("--trainer-setting", choices=list(SETTING_NAMES), default="fp32",
                        help="precision and compile of the trainer row and of ddp-2/fsdp-2")
    parser.add_argument("--sdpa", choices=["default", "flash"], default="default",
                        help="flash: the bf16 rows run under sdpa_kernel(FLASH_ATTENTION)")
    parser.add_argument("--no-distributed", action="store_true", help="skip the 2-process ddp and fsdp rows")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the .json and .png (default: %(default)s)")
    parser.add_argument("--worker", nargs=2, metavar=("STRATEGY", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.training --device cuda: torch.cuda.is_available() is False (torch "
                         f"{torch.__version__}, built for CUDA {torch.version.cuda})")
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    settings = [setting for setting in SETTINGS if setting[0] in {SETTING_NAMES[name] for name in args.settings}]

    ours, hf = build_pair(args.d_model, args.layers, args.heads, args.seq)
    ours, hf = ours.to(device), hf.to(device)
    config = ours.config
    batch = torch.randint(0, config.vocab_size, (args.batch, args.seq + 1)).to(device)
    with torch.no_grad():
        logits_gap = (ours(batch[:, :-1]).logits - hf(input_ids=batch[:, :-1]).logits).abs().max().item()
    ours.train(), hf.train()
    models = {"fmblocks": ours, "hf": hf}
    steps, fallback, backend, compiled = {}, {}, {}, {}
    for suffix, bf16, compile_ in settings:
        for prefix in models:
            name = prefix + suffix
            backend[name] = "flash" if bf16 and args.sdpa == "flash" else "default"
            compiled[name] = compile_
    for name in tqdm(backend, desc="warm-up and compile"):
        prefix, bf16 = name.split("-")[0], name.endswith("bf16")
        # try the row as asked; where the flash kernel or the compiler fails, default kernels, then eager
        attempts = dict.fromkeys([(compiled[name], backend[name]), (compiled[name], "default"), (False, "default")])
        for compile_, kernel in attempts:
            model = models[prefix]
            steps[name] = step_function(model, batch, hf=prefix == "hf", bf16=bf16, flash=kernel == "flash",
                                        forward=torch.compile(model) if compile_ else None)
            try:
                steps[name]()  # warm-up: allocations, optimizer state, compilation
                break
            except Exception as err:  # noqa: BLE001 - recorded, and the next attempt is timed instead
                if (compile_, kernel) == (False, "default"):
                    raise  # eager with torch's default kernels is no fallback: the row itself is broken
                fallback.setdefault(name, []).append(f"compile={compile_} sdpa={kernel}: {type(err).__name__}: "
                                                     f"{(str(err).splitlines() or [''])[0][:160]}")
        compiled[name], backend[name] = compile_, kernel
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    peaks: dict[str, float] = {}
    for _ in tqdm(range(args.steps), desc="training steps"):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            times[name].append(timed(step, device))
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), (torch.cuda.max_memory_allocated(device) - before) / 2**20)
    trainer_name = "trainer" + SETTING_NAMES[args.trainer_setting]
    trainer_clock, trainer_wall = trainer_seconds(config, args)
    ceiling = matmul_ceiling(device)

    tokens = args.batch * args.seq
    flops = 3 * sum(cost.flops for cost in model_costs(config, args.seq, batch=args.batch))
    clock = device.type  # the key of the main clock: seconds_per_step_cpu on the CPU, seconds_per_step_cuda on CUDA
    results = {}
    for name, seconds, wall in [(n, min(c for c, _ in t), min(w for _, w in t)) for n, t in times.items()] + [
            (trainer_name, trainer_clock, trainer_wall)]:
        results[name] = {f"seconds_per_step_{clock}": seconds, "seconds_per_step_wall": wall,
                         "tokens_per_s": tokens / seconds, "tokens_per_s_wall": tokens / wall,
                         "mfu": flops / seconds / ceiling}
    for name, measured in times.items():
        results[name]["tokens_per_s_median"] = tokens / statistics.median(c for c, _ in measured)
        results[name].update(sdpa=backend[name], compiled=compiled[name])
        if name in peaks:
            results[name]["peak_step_mib"] = peaks[name]
    skipped = {}
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        skipped = {f"{s}-2": f"needs 2 GPUs (nccl), {torch.cuda.device_count()} found" for s in ("ddp", "fsdp")}
    elif device.type == "cpu" and args.threads != 1:
        skipped = {f"{s}-2": "runs only with --threads 1" for s in ("ddp", "fsdp")}
    elif args.no_distributed:
        skipped = {f"{s}-2": "--no-distributed" for s in ("ddp", "fsdp")}
    for strategy in ("ddp", "fsdp"):
        if f"{strategy}-2" not in skipped:
            wall = distributed_seconds(args, strategy)
            results[f"{strategy}-2"] = {"seconds_per_step_wall": wall, "tokens_per_s_wall": tokens / wall,
                                        "tokens_per_s": tokens / wall, "mfu": flops / wall / (2 * ceiling)}
    hf_names = [n for n in times if n.startswith("hf")]
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__, "matmul_ceiling_gflops": ceiling / 1e9,
               "matmul_ceiling": f"{MATMUL[device.type][0]}^3 {str(MATMUL[device.type][1]).removeprefix('torch.')}",
               "device": device.type, "clock": CLOCKS[device.type]}
    if device.type == "cuda":
        machine.update(gpu=torch.cuda.get_device_name(device), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                       float32_matmul_precision=torch.get_float32_matmul_precision(),
                       max_memory_allocated_mib=torch.cuda.max_memory_allocated(device) / 2**20)
    document = {
        "machine": machine,
        "command": " ".join(["python -m bench.training"] + sys.argv[1:]),
        "model": {"d_model": args.d_model, "layers": args.layers, "heads": args.heads, "vocab": config.vocab_size,
                  "seq": args.seq, "batch": args.batch, "params": sum(p.numel() for p in ours.parameters())},
        "train_gflops_per_step": flops / 1e9,
        "logits_max_abs_diff_same_weights": logits_gap,
        "results": results,
        "fallback": fallback,
        "skipped": skipped,
        "speedup_vs_hf": ratio(results, next(iter(times)), hf_names[0]),
        "best_vs_best_hf": max(results[n]["tokens_per_s"] for n in times if n.startswith("fmblocks"))
        / max(results[n]["tokens_per_s"] for n in hf_names),
        "trainer_vs_hf": ratio(results, trainer_name, "hf" + SETTING_NAMES[args.trainer_setting]),
    }
    stem = "training" if device.type == "cpu" else f"training-{device.type}"
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{stem}.json", document, fmt="fmblocks-bench-training")
    where = f"{args.threads} thread(s)" if device.type == "cpu" else machine["gpu"]
    plot(results, args.results / f"{stem}.png", clock=device.type,
         title=f"{args.layers} layers, d={args.d_model}, B={args.batch}, T={args.seq}, {where}")
    for name, row in results.items():
        print(f"{name:>21}: {row['tokens_per_s']:8.0f} tokens/s  MFU {100 * row['mfu']:.1f} %"
              + (f"  sdpa {row['sdpa']}" if "sdpa" in row else "")
              + (f"  peak {row['peak_step_mib']:.0f} MiB" if "peak_step_mib" in row else "")
              + (f"  (fell back: {fallback[name][-1]})" if name in fallback else ""))
    for name, reason in skipped.items():
        print(f"{name:>21}: skipped ({reason})")
    print(f"fmblocks / hf = {document['speedup_vs_hf']:.2f}x (best / best {document['best_vs_best_hf']:.2f}x); "
          f"matmul ceiling {ceiling / 1e9:.1f} GFLOP/s; same-weights logits gap {logits_gap:.1e}")
    print(f"wrote {args.results / stem}.json and {stem}.png")


def ratio(results: dict, name: str, reference: str) -> float | None:
    """tokens/s of results[name] over results[reference]'s; None where either row did not run."""
    if name not in results or reference not in results:
        return None
    return results[name]["tokens_per_s"] / results[reference]["tokens_per_s"]


def plot(results: dict, path: Path, *, title: str, clock: str = "cpu") -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot()
    names = list(results)
    bars = axes.bar(names, [results[n]["tokens_per_s"] for n in names], color=[f"C{i}" for i in range(len(names))])
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes.margins(y=0.15)
    axes.bar_label(bars, labels=[f"MFU {100 * results[n]['mfu']:.0f}%" for n in names])
    axes.set_ylabel(f"training tokens/s ({'CPU' if clock == 'cpu' else 'CUDA-event'} time; ddp/fsdp: wall)")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
