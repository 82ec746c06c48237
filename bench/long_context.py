"""Benchmark: one causal token-mixer layer against sequence length, attention (sdpa, chunked) vs long convolutions
(long-conv, hyena), at equal width, on the CPU.

For every mixer and length T (1k ... 64k) a fresh Python process builds the mixer with fmblocks.blocks.build_mixer
(d_model=128, 4 heads for attention, max_len=65,536 for the convolutions, hyena of order 2) and x (1, T, 128) in
float32, and measures one causal forward pass (with --backward: forward + backward of y.sum()):
    peak_mib  peak extra resident memory of the call (Linux VmHWM, reset just before the call)
    time_ms   fastest wall time of the repeats after one warm-up, on one thread
A mixer whose next length would take longer than --budget seconds (extrapolated from its last two lengths) is
skipped from there on, and the row says so. `crossover` is, per attention core, the shortest measured T at
which hyena is faster. Writes bench/results/long_context.json and long_context.png (with --backward:
long_context_backward.json and long_context_backward.png, so the forward results stay).

The lecture's claim (Poli et al., 2023, on a GPU against FlashAttention): Hyena about 2x faster at 8k and about
100x at 64k. This benchmark reports what one CPU thread shows.

    .venv/bin/python -m bench.long_context [--lengths 1024 ... 65536] [--repeats 3] [--budget 30] [--backward]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.attention import _status_kib
from fmblocks.files import atomic_writer, write_json

MIXERS = {"sdpa": ("attention", "sdpa", {}), "chunked": ("attention", "chunked", {"block_size": 1024}),
          "long-conv": ("long-conv", "sdpa", {}), "hyena": ("hyena", "sdpa", {"order": 2})}
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
D_MODEL, HEADS, MAX_LEN = 128, 4, 65536
RESULTS = Path(__file__).resolve().parent / "results"


def measure(method: str, t: int, repeats: int, backward: bool) -> dict:
    """Peak extra memory and best time of one causal call of the mixer at length t (run in a fresh process)."""
    from fmblocks.blocks.mixers import MixerSpec, build_mixer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    name, core, options = MIXERS[method]
    mixer = build_mixer(name, MixerSpec(D_MODEL, HEADS, max_len=MAX_LEN, core=core), **options).eval()
    x = torch.randn(1, t, D_MODEL, requires_grad=backward)

    def call() -> None:
        if backward:
            mixer(x, causal=True).sum().backward()
        else:
            with torch.no_grad():
                mixer(x, causal=True)

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size to the current size
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    call()  # the warm-up is also the memory measurement
    first = time.perf_counter() - start
    peak_mib = (_status_kib("VmHWM") - before) / 1024
    times = []
    for _ in range(repeats if first < 5 else 1):  # long calls: one timed repeat
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"time_ms": 1000 * min(times), "peak_mib": peak_mib}


def _run_worker(method: str, t: int, repeats: int, backward: bool) -> dict:
    command = [sys.executable, "-m", "bench.long_context", "--worker", method, str(t), str(repeats), str(int(backward))]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(lengths: tuple[int, ...], repeats: int, budget_s: float, backward: bool) -> dict:
    rows = []
    for method in MIXERS:
        done: list[dict] = []
        for t in sorted(lengths):
            if done:  # extrapolate the growth of the last step (quadratic before there is one)
                growth = done[-1]["time_ms"] / done[-2]["time_ms"] if len(done) >= 2 else (t / done[-1]["T"]) ** 2
                estimate_s = done[-1]["time_ms"] / 1000 * max(growth, 1.0)
                if estimate_s > budget_s:
                    rows.append({"method": method, "T": t, "skipped": f"estimated {estimate_s:.0f} s > budget {budget_s:.0f} s"})
                    print(f"{method:>9} T={t:>6} skipped (estimated {estimate_s:.0f} s)", flush=True)
                    continue
            row = {"method": method, "T": t, **_run_worker(method, t, repeats, backward)}
            print(f"{method:>9} T={t:>6} {row['time_ms']:10.1f} ms {row['peak_mib']:9.1f} MiB", flush=True)
            done.append(row)
            rows.append(row)
    measured = {(r["method"], r["T"]): r for r in rows if "time_ms" in r}
    for row in rows:
        ref = measured.get(("sdpa", row["T"]))
        if "time_ms" in row and ref:
            row["time_vs_sdpa"] = row["time_ms"] / ref["time_ms"]
    crossover = {}
    for core in ("sdpa", "chunked"):
        faster = [t for t in sorted(lengths) if ("hyena", t) in measured and (core, t) in measured
                  and measured[("hyena", t)]["time_ms"] < measured[(core, t)]["time_ms"]]
        crossover[core] = faster[0] if faster else None
    setup = {"batch": 1, "d_model": D_MODEL, "heads": HEADS, "max_len": MAX_LEN, "dtype": "float32", "device": "cpu",
             "threads": 1, "repeats": repeats, "budget_s": budget_s, "pass": "forward+backward" if backward else "forward",
             "causal": True, "torch": torch.__version__,
             "options": {method: options for method, (_, _, options) in MIXERS.items()}}
    return {"setup": setup, "rows": rows, "crossover_vs": crossover}


def table(result: dict) -> str:
    """The results as a markdown table: time (ms) and peak memory (MiB) per mixer and length."""
    lengths = sorted({r["T"] for r in result["rows"]})
    cells = {(r["method"], r["T"]): ("skipped" if "skipped" in r else f"{r['time_ms']:,.0f} ms / {r['peak_mib']:,.0f} MiB")
             for r in result["rows"]}
    head = "| mixer | " + " | ".join(f"{t // 1024}k" for t in lengths) + " |"
    lines = [head, "|" + "---|" * (len(lengths) + 1)]
    for method in MIXERS:
        lines.append(f"| {method} | " + " | ".join(cells.get((method, t), "") for t in lengths) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, color in zip(MIXERS, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        rows = [r for r in result["rows"] if r["method"] == method and "time_ms" in r]
        for ax, key in zip(axes, ("time_ms", "peak_mib")):
            ax.plot([r["T"] for r in rows], [max(r[key], 1e-2) for r in rows], color=color, marker="o", label=method)
    lengths = sorted({r["T"] for r in result["rows"]})
    for ax, title in zip(axes, (f"{result['setup']['pass']} time (ms, best of repeats)", "peak extra memory (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", title=title)
        ax.set_xticks(lengths, labels=[f"{t // 1024}k" for t in lengths], minor=False)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    setup = result["setup"]
    fig.suptitle(f"one causal mixer layer, B=1 d={setup['d_model']} fp32 CPU, {setup['threads']} thread")
    fig.tight_layout()
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0, help="skip a call estimated to take longer (seconds)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward instead of forward")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "T", "REPEATS", "BACKWARD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, t, repeats, backward = args.worker
        print(json.dumps(measure(method, int(t), int(repeats), bool(int(backward)))))
        return
    result = run(tuple(args.lengths), args.repeats, args.budget, args.backward)
    stem = "long_context_backward" if args.backward else "long_context"
    write_json(RESULTS / f"{stem}.json", result, fmt="fmblocks-bench-long-context")
    plot(result, RESULTS / f"{stem}.png")
    print(table(result))
    print("hyena faster from T =", result["crossover_vs"])


if __name__ == "__main__":
    main()
