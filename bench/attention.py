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

    .venv/bin/python -m bench.attention [--lengths 512 1024 2048 4096] [--repeats 5]
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from fmblocks.blocks.attention import ATTENTION_CORES
from fmblocks.files import atomic_writer, write_json

METHODS = ("sdpa", "math", "chunked", "sparse", "flex")
OPTIONS = {"sparse": {"window": 128, "n_global": 1}, "flex": {"window": 128, "n_global": 1}}  # the same pattern
LENGTHS = (512, 1024, 2048, 4096)
HEADS, HEAD_DIM = 8, 64
RESULTS = Path(__file__).resolve().parent / "results"


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure(method: str, t: int, causal: bool, repeats: int) -> dict:
    """Peak extra memory and median time of one `method` forward at length t (run in a fresh process)."""
    torch.set_num_threads(1)  # comparable across machines and robust to other load
    core = ATTENTION_CORES.get(method)(**OPTIONS.get(method, {}))  # flex: the warm-up call compiles
    q, k, v = (torch.randn(1, HEADS, t, HEAD_DIM) for _ in range(3))
    with torch.no_grad():
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size to the current size
        before = _status_kib("VmRSS")
        core(q, k, v, None, causal=causal, scale=None, dropout_p=0.0)
        peak_mib = (_status_kib("VmHWM") - before) / 1024
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            core(q, k, v, None, causal=causal, scale=None, dropout_p=0.0)
            times.append(time.perf_counter() - start)
    return {"time_ms": 1000 * min(times), "median_ms": 1000 * statistics.median(times), "peak_mib": peak_mib}


def _run_worker(method: str, t: int, causal: bool, repeats: int) -> dict:
    command = [sys.executable, "-m", "bench.attention", "--worker", method, str(t), str(int(causal)), str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(lengths: tuple[int, ...], repeats: int) -> dict:
    from tqdm import tqdm

    rows = []
    jobs = [(causal, t, method) for causal in (False, True) for t in lengths for method in METHODS]
    for causal, t, method in tqdm(jobs, desc="attention bench", unit="run"):
        rows.append({"method": method, "T": t, "causal": causal, **_run_worker(method, t, causal, repeats)})
    for row in rows:
        ref = next(r for r in rows if r["method"] == "sdpa" and r["T"] == row["T"] and r["causal"] == row["causal"])
        row["time_vs_sdpa"] = row["time_ms"] / ref["time_ms"]
        row["memory_vs_sdpa"] = row["peak_mib"] / max(ref["peak_mib"], 1e-3)
        if row["method"] == "flex":
            sparse = next(r for r in rows if r["method"] == "sparse" and r["T"] == row["T"] and r["causal"] == row["causal"])
            row["time_vs_sparse"] = row["time_ms"] / sparse["time_ms"]
    setup = {
        "batch": 1, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": "float32", "device": "cpu",
        "threads": 1, "repeats": repeats, "torch": torch.__version__,
        "chunked_block_size": 256, "sparse_and_flex_options": OPTIONS,
    }
    return {"setup": setup, "rows": rows}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, color in zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
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
    fig.suptitle(f"attention, B=1 H={setup['heads']} Dh={setup['head_dim']} fp32 CPU, {setup['threads']} thread")
    fig.tight_layout()
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "T", "CAUSAL", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, t, causal, repeats = args.worker
        print(json.dumps(measure(method, int(t), bool(int(causal)), int(repeats))))
        return
    result = run(tuple(args.lengths), args.repeats)
    write_json(RESULTS / "attention.json", result, fmt="fmblocks-bench-attention")
    plot(result, RESULTS / "attention.png")
    for row in result["rows"]:
        print(
            f"{row['method']:>8} T={row['T']:>5} {'causal' if row['causal'] else 'full  '} "
            f"{row['time_ms']:9.2f} ms ({row['time_vs_sdpa']:5.2f}x sdpa)  "
            f"{row['peak_mib']:8.1f} MiB ({row['memory_vs_sdpa']:6.2f}x sdpa)"
            + (f"  {row['time_vs_sparse']:5.2f}x sparse" if "time_vs_sparse" in row else "")
        )


if __name__ == "__main__":
    main()
