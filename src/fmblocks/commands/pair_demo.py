"""`fmblocks pair-demo train | eval`: distance maps of synthetic 3-D chains from their sequence, a small Pairformer
against the same model without triangle operators (see fmblocks.apps.pair_distances).

    fmblocks pair-demo train --out runs/pair-demo [--preset default|tiny] [--steps N] [--seed S] [--chain I]
    fmblocks pair-demo eval  --out runs/pair-demo [--chain I]

train: both models (triangle/ and baseline/ in --out, each with checkpoint/, log.csv, loss.png; run.json; an
interrupted run resumes), then what `eval` writes. eval: metrics.json (held-out MAE in A, MAE of pairs
|i - j| >= 12, an lDDT-like score, long-range contact precision, for both models and the per-offset mean
distance) and pair-distances.png (true and predicted maps of held-out chain I, by default the one of median
error; |error| maps; loss curves). Torch runs on --threads CPU threads (default 1: the matrices are small,
and a busy 2-core machine is slower with 2).
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pair-demo", help="pair representation demo: chain distance maps, Pairformer vs no triangles (train, eval)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("runs/pair-demo"), help="run directory (default runs/pair-demo)")
    common.add_argument("--chain", type=int, help="held-out chain to plot (default: the one of median error)")
    common.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")

    train_parser = actions.add_parser("train", parents=[common], help="train both models, then eval")
    train_parser.add_argument("--preset", default="default", help="run size: default or tiny (default: default)")
    train_parser.add_argument("--steps", type=int, help="optimizer steps per model (default: the preset's)")
    train_parser.add_argument("--seed", type=int, default=0, help="seed of the chains and the weights (default 0)")
    train_parser.set_defaults(func=run_train)

    eval_parser = actions.add_parser("eval", parents=[common], help="metrics.json and pair-distances.png of a run")
    eval_parser.set_defaults(func=run_eval)


def _check(args: argparse.Namespace) -> None:
    """Refuse bad numbers before anything is built or written."""
    from fmblocks.errors import ConfigError

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.chain is not None and args.chain < 0:
        raise ConfigError(f"--chain must be >= 0, got {args.chain}")
    if getattr(args, "steps", None) is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")


def _report(metrics: dict) -> None:
    for name, row in metrics["models"].items():
        size = f", {row['parameters']:,} parameters, {row['train_seconds']:g} s" if "parameters" in row else ""
        print(f"{name}: MAE {row['mae']:.2f} A (|i-j| >= 12: {row['mae_long_range']:.2f} A), lDDT-like "
              f"{row['lddt']:.3f}, contact precision {row['contact_precision']:.3f}{size}")


def run_train(args: argparse.Namespace) -> int:
    _check(args)
    from fmblocks.apps.pair_distances import RUN_PRESETS, evaluate, train
    from fmblocks.errors import ConfigError, UnknownNameError

    if args.preset not in RUN_PRESETS:
        raise UnknownNameError(f"unknown pair-demo preset {args.preset!r}; known: {', '.join(RUN_PRESETS)}")
    if args.chain is not None and args.chain >= RUN_PRESETS[args.preset]["n_test"]:
        raise ConfigError(f"--chain must be < {RUN_PRESETS[args.preset]['n_test']} (the held-out chains)")
    import torch

    torch.set_num_threads(args.threads)
    out = train(args.out, preset_name=args.preset, steps=args.steps, seed=args.seed)
    _report(evaluate(out, chain=args.chain))
    print(f"wrote {out} (triangle/, baseline/, run.json, metrics.json, pair-distances.png)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    _check(args)
    import torch

    from fmblocks.apps.pair_distances import evaluate

    torch.set_num_threads(args.threads)
    _report(evaluate(args.out, chain=args.chain))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'pair-distances.png'}")
    return 0
