"""Benchmark: AlphaFold's O(N^3) pair operators at N = 384 residues on this CPU, chunked and unchunked.

For every operator and chunk size a fresh Python process builds a pair tensor z (1, N, N, c_z) in float32
(c_z = 128, the paper's width; triangle update c = 128; triangle attention 4 heads of 32; the Pairformer
block adds a single representation of c_s = 384 with 16 heads of 24) and measures one forward pass with
no autograd:
    peak_mib  peak extra resident memory of the call (Linux VmHWM, reset just before the call)
    time_s    wall time of that call (two threads, shared machine: indicative, not a tight number)
Fresh processes keep one measurement's freed memory from hiding the next one's. The unchunked triangle
attention holds (1, N, H, N, N) logits, 0.9 GB at N = 384; chunk_size = 32 bounds them to (1, N, H, 32, N).
Writes bench/results/pair.json and pair.png.

    .venv/bin/python -m bench.pair [--n 384] [--chunks 0 32]      (0 = unchunked)
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.measure import write_results

OPERATORS = ("triangle_multiplication", "triangle_attention", "pairformer_block")
C_Z, C_S = 128, 384


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith(field + ":")).split()[1])


def _build(name: str):
    from fmblocks.blocks.pair import PairformerBlock, TriangleAttentionStartingNode, TriangleMultiplicationOutgoing

    if name == "triangle_multiplication":
        op = TriangleMultiplicationOutgoing(C_Z, 128)
        return lambda s, z, mask, chunk: op(z, mask, chunk_size=chunk)
    if name == "triangle_attention":
        op = TriangleAttentionStartingNode(C_Z, 32, 4)
        return lambda s, z, mask, chunk: op(z, mask, chunk_size=chunk)
    op = PairformerBlock(C_S, C_Z)
    return lambda s, z, mask, chunk: op(s, z, mask, chunk_size=chunk)


def _child(name: str, n: int, chunk: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    run = _build(name)
    s, z, mask = torch.randn(1, n, C_S), torch.randn(1, n, n, C_Z), torch.ones(1, n)
    with torch.no_grad():
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size to the current size
        before = _status_kib("VmRSS")
        start = time.perf_counter()
        run(s, z, mask, chunk or None)
        seconds = time.perf_counter() - start
        peak_mib = (_status_kib("VmHWM") - before) / 1024
    print(json.dumps({"peak_mib": round(peak_mib, 1), "time_s": round(seconds, 2)}))


def measure(name: str, n: int, chunk: int) -> dict:
    command = [sys.executable, "-m", "bench.pair", "--child", name, str(n), str(chunk)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plot(ax, rows: list) -> None:
    labels = [f"{r['operator']}\nchunk {r['chunk_size'] or 'none'}" for r in rows]
    ax.barh(labels, [r["peak_mib"] for r in rows])
    ax.set_xlabel("peak extra memory (MiB)")
    ax.set_title(f"pair operators at N = {rows[0]['n']}, c_z = {C_Z} (CPU, float32, forward)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=384)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 32])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    rows = []
    for name in OPERATORS:
        for chunk in args.chunks:
            row = {"operator": name, "n": args.n, "c_z": C_Z, "chunk_size": chunk or None, **measure(name, args.n, chunk)}
            print(row, flush=True)
            rows.append(row)
    write_results("pair", {"rows": rows}, {"rows": _plot})


if __name__ == "__main__":
    main()
