"""`python -m bench [NAME ...]`: run the named benchmarks (default: all), each writing bench/results/NAME.*.

Each benchmark module has `main()`; figures are ratios against the reference measured in the same run.
"""

import importlib
import sys

BENCHMARKS = ["attention", "tokenizers", "wordpiece", "generation", "training", "pair", "long_context", "data"]


def run(names: list[str]) -> None:
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    for name in names or BENCHMARKS:
        print(f"== bench.{name}", flush=True)
        sys.argv = [f"bench.{name}"]  # each main() reads its own defaults, not this command's arguments
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    run(sys.argv[1:])
