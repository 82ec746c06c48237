"""Measuring helpers shared by the benchmarks: best-of-n timing (CPU and wall), one timed call on the CPU or
a CUDA device, and process memory."""

import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int) -> tuple[object, float, float]:
    """(result of the last run, best CPU seconds of this process, best wall seconds) over `repeats` runs."""
    out, cpu, wall = None, float("inf"), float("inf")
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = min(cpu, time.process_time() - cpu_start), min(wall, time.perf_counter() - wall_start)
    return out, cpu, wall


def timed(fn, device=None) -> tuple[float, float]:
    """(seconds on the device's clock, wall seconds) of one call of `fn`: the process CPU time on the CPU (or with
    no device); on a CUDA device the CUDA-event time around the call, with torch.cuda.synchronize() before and
    after (the wall time then includes the launch overhead and the final wait)."""
    if getattr(device, "type", device) == "cuda":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        wall = time.perf_counter()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3, time.perf_counter() - wall  # elapsed_time is in ms
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MB (Linux /proc)."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) / 1e3


def write_results(name: str, results: dict, sections: dict) -> None:
    """bench/results/NAME.json, and NAME.png with one panel per section present: sections[key](axes, results[key]).

    Sections not run this time (`--only`) are kept from the previous NAME.json, and listed under
    "carried_over" with that file's command and machine, so a partial run never drops results.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmblocks.files import atomic_writer, read_json, write_json

    path = RESULTS / f"{name}.json"
    previous = read_json(path, fmt="fmblocks-bench") if path.exists() else {}
    kept = [key for key in sections if key not in results and key in previous]
    if kept:
        earlier = previous.get("carried_over", {})
        results["carried_over"] = {
            key: earlier.get(key, {"command": previous.get("command"), "machine": previous.get("machine")}) for key in kept
        }
        results.update({key: previous[key] for key in kept})
    write_json(path, results, fmt="fmblocks-bench")
    shown = [key for key in sections if key in results]
    fig, axes = plt.subplots(1, len(shown), figsize=(7 * len(shown), 5), squeeze=False)
    for ax, key in zip(axes[0], shown):
        sections[key](ax, results[key])
    fig.tight_layout()
    with atomic_writer(RESULTS / f"{name}.png") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    print(f"wrote {RESULTS / (name + '.json')} and {name}.png")
