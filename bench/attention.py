"""Benchmark: exact attention via torch's fused kernel ("sdpa"), written out ("math") and chunked (flash-style);
sparse local + global attention ("sparse") and the same pattern through FlexAttention ("flex", time_vs_sparse).

For every method, length T and masking (full / causal), a fresh Python process builds q, k, v of shape
(1, H=8, T, Dh=64) in float32 on the CPU and measures one forward pass:
    peak_mib  peak extra resident memory of the call (Linux VmHWM, reset just before the call)
              (flex: that call also compiles, so its peak includes the compiler)
    time_ms   fastest wall time of `repeats` calls after one warm-up (median_ms: their median), on one
              thread; the fastest run is the one least disturbed by other load on the machine
Fresh processes keep one measurement's freed memory from hiding the next one's. Ratios are against
F.scaled_dot_product_attention in the same run. Writes bench/results/attention.json and attention.png.

`--dtype` sets q, k, v's dtype; `--sdpa flash` runs the "sdpa" rows under sdpa_kernel(FLASH_ATTENTION)
(where that kernel refuses the inputs the row runs on torch's default kernels and says so under
"fallback"; every row records its "sdpa_backend"); `--methods` picks the methods ("sdpa" is the reference
and always runs). `--device cuda` measures on cuda:0, in this process (the allocator's counters need no
fresh process, and CUDA start-up would cost seconds per row), and writes attention-cuda.json/.png:
    peak_mib  torch.cuda.max_memory_allocated during the warm-up call less what was allocated before it
    time_ms   CUDA-event time of each call, torch.cuda.synchronize() before and after (the "clock" in setup)

    .venv/bin/python -m bench.attention [--lengths 512 1024 2048 4096] [--repeats 5]
    .venv/bin/python -m bench.attention --device cuda --dtype bfloat16 --sdpa flash --lengths 1024 4096 16384
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from contextlib import nullcontext

import torch

from bench.measure import timed
from fmblocks.blocks.attention import ATTENTION_CORES
from fmblocks.files import atomic_writer, write_json

METHODS = ("sdpa", "math", "chunked", "sparse", "flex")
OPTIONS = {"sparse": {"window": 128, "n_global": 1}, "flex": {"window": 128, "n_global": 1}}  # the same pattern
LENGTHS = (512, 1024, 2048, 4096)
HEADS, HEAD_DIM = 8, 64
RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CLOCKS = {"cpu": "wall time (perf_counter), one thread",
          "cuda": "CUDA events around the call, torch.cuda.synchronize() before and after"}


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure(method: str, t: int, causal: bool, repeats: int, *, device: str = "cpu", dtype: str = "float32",
            sdpa: str = "default") -> dict:
    """Peak extra memory and times of one `method` forward at length t (on the CPU: run in a fresh process)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.set_num_threads(1)  # comparable across machines and robust to other load
    on = torch.device(device)
    core = ATTENTION_CORES.get(method)(**OPTIONS.get(method, {}))  # flex: the warm-up call compiles
    q, k, v = (torch.randn(1, HEADS, t, HEAD_DIM, device=on, dtype=DTYPES[dtype]) for _ in range(3))
    backend = "flash" if method == "sdpa" and sdpa == "flash" else "default"
    row = {}

    def call() -> None:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if backend == "flash" else nullcontext():
            core(q, k, v, None, causal=causal, scale=None, dropout_p=0.0)

    with torch.no_grad():
        if on.type == "cuda":
            torch.cuda.synchronize(on)
            torch.cuda.reset_peak_memory_stats(on)
            before = torch.cuda.memory_allocated(on)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size to the current size
            before = _status_kib("VmRSS")
        try:
            call()
        except RuntimeError as err:  # the flash kernel refuses these inputs (dtype, head size, GPU): torch's default
            if backend != "flash":
                raise
            row["fallback"] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}"
            backend = "default"
            call()
        if on.type == "cuda":
            torch.cuda.synchronize(on)
            peak_mib = (torch.cuda.max_memory_allocated(on) - before) / 2**20
        else:
            peak_mib = (_status_kib("VmHWM") - before) / 1024
        times = []
        for _ in range(repeats):
            device_seconds, wall = timed(call, on)
            times.append(device_seconds if on.type == "cuda" else wall)
    return {"time_ms": 1000 * min(times), "median_ms": 1000 * statistics.median(times), "peak_mib": peak_mib,
            "sdpa_backend": backend, **row}


def _run_worker(method: str, t: int, causal: bool, repeats: int, *, dtype: str, sdpa: str) -> dict:
    command = [sys.executable, "-m", "bench.attention", "--worker", method, str(t), str(int(causal)), str(repeats),
               "--dtype", dtype, "--sdpa", sdpa]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(lengths: tuple[int, ...], repeats: int, *, methods: tuple[str, ...] = METHODS, device: str = "cpu",
        dtype: str = "float32", sdpa: str = "default") -> dict:
    from tqdm import tqdm

    methods = tuple(m for m in METHODS if m in methods or m == "sdpa")  # sdpa: the reference of every ratio
    rows = []
    jobs = [(causal, t, method) for causal in (False, True) for t in lengths for method in methods]
    for causal, t, method in tqdm(jobs, desc="attention bench", unit="run"):
        if device == "cuda":
            measured = measure(method, t, causal, repeats, device=device, dtype=dtype, sdpa=sdpa)
        else:
            measured = _run_worker(method, t, causal, repeats, dtype=dtype, sdpa=sdpa)
        rows.append({"method": method, "T": t, "causal": causal, **measured})
    for row in rows:
        ref = next(r for r in rows if r["method"] == "sdpa" and r["T"] == row["T"] and r["causal"] == row["causal"])
        row["time_vs_sdpa"] = row["time_ms"] / ref["time_ms"]
        row["memory_vs_sdpa"] = row["peak_mib"] / max(ref["peak_mib"], 1e-3)
        if row["method"] == "flex" and "sparse" in methods:
            sparse = next(r for r in rows if r["method"] == "sparse" and r["T"] == row["T"] and r["causal"] == row["causal"])
            row["time_vs_sparse"] = row["time_ms"] / sparse["time_ms"]
    setup = {
        "batch": 1, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": dtype, "device": device,
        "threads": 1, "repeats": repeats, "torch": torch.__version__, "clock": CLOCKS[device], "sdpa": sdpa,
        "chunked_block_size": 256, "sparse_and_flex_options": OPTIONS, "methods": list(methods),
    }
    if device == "cuda":
        setup.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return {"setup": setup, "rows": rows}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, color in zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        if method not in result["setup"].get("methods", METHODS):
            continue
        for causal, style in ((False, "-"), (True, "--")):
            rows = [r for r in result["rows"] if r["method"] == method and r["causal"] == causal]
            label = f"{method} ({'causal' if causal else 'full'})"
            for ax, key in zip(axes, ("time_ms", "peak_mib")):
                values = [max(r[key], 1e-2) for r in rows]  # log axes need positive values
                ax.plot([r["T"] for r in rows], values, style, color=color, marker="o", label=label)
    lengths = sorted({r["T"] for r in result["rows"]})
    for ax, title in zip(axes, ("forward time (ms, best of repeats)", "peak extra memory (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", title=title)
        ax.set_xticks(lengths, labels=[str(t) for t in lengths], minor=False)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    setup = result["setup"]
    where = setup["gpu"] if setup.get("device") == "cuda" else f"CPU, {setup['threads']} thread"
    fig.suptitle(f"attention, B=1 H={setup['heads']} Dh={setup['head_dim']} {setup['dtype']} (sdpa: {setup.get('sdpa', 'default')}), "
                 f"{where}")
    fig.tight_layout()
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--sdpa", choices=["default", "flash"], default="default",
                        help="flash: the sdpa rows run under sdpa_kernel(FLASH_ATTENTION)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the .json and .png (default: %(default)s)")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "T", "CAUSAL", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.attention --device cuda: torch.cuda.is_available() is False (torch "
                         f"{torch.__version__}, built for CUDA {torch.version.cuda})")
    if args.worker:
        method, t, causal, repeats = args.worker
        print(json.dumps(measure(method, int(t), bool(int(causal)), int(repeats), dtype=args.dtype, sdpa=args.sdpa)))
        return
    result = run(tuple(args.lengths), args.repeats, methods=tuple(args.methods), device=args.device, dtype=args.dtype,
                 sdpa=args.sdpa)
    result["setup"]["command"] = " ".join(["python -m bench.attention"] + (sys.argv[1:] if argv is None else argv))
    stem = "attention" if args.device == "cpu" else f"attention-{args.device}"
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / f"{stem}.json", result, fmt="fmblocks-bench-attention")
    plot(result, args.results / f"{stem}.png")
    for row in result["rows"]:
        print(
            f"{row['method']:>8} T={row['T']:>5} {'causal' if row['causal'] else 'full  '} "
            f"{row['time_ms']:9.2f} ms ({row['time_vs_sdpa']:5.2f}x sdpa)  "
            f"{row['peak_mib']:8.1f} MiB ({row['memory_vs_sdpa']:6.2f}x sdpa)"
            + (f"  {row['time_vs_sparse']:5.2f}x sparse" if "time_vs_sparse" in row else "")
            + (f"  sdpa {row['sdpa_backend']}" if row["method"] == "sdpa" else "")
            + (f"  (fell back: {row['fallback']})" if "fallback" in row else "")
        )
    print(f"wrote {args.results / stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
