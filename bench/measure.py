"""Measuring helpers shared by the benchmarks: best-of-n timing (CPU and wall) and process memory."""

import time


def best_of(fn, repeats: int) -> tuple[object, float, float]:
    """(result of the last run, best CPU seconds of this process, best wall seconds) over `repeats` runs."""
    out, cpu, wall = None, float("inf"), float("inf")
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = min(cpu, time.process_time() - cpu_start), min(wall, time.perf_counter() - wall_start)
    return out, cpu, wall


def memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MB (Linux /proc)."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) / 1e3
