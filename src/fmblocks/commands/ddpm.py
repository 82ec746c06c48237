"""`fmblocks ddpm train | sample`: a class-conditioned DDPM on 2-D moons with classifier-free guidance.

    fmblocks ddpm train  --out runs/ddpm [--preset default|tiny] [--steps N] [--schedule linear|cosine]
                         [--timesteps T] [--noise SD] [--seed S] [--guidance W ...] [--n-per-class N]
    fmblocks ddpm sample --out runs/ddpm [--guidance W ...] [--n-per-class N] [--seed S]

train: the denoiser (checkpoint/, log.csv, loss.png, run.json in --out; an interrupted run resumes),
then what `sample` writes. sample: samples.png (the data, then the samples of each moon at every
guidance weight W >= 0; W = 0 is the plain conditional model) and metrics.json, per weight: distance
(mean, sample -> nearest point of its requested moon), coverage (mean, moon point -> nearest sample of
that moon) and accuracy (fraction of samples nearer their own moon than the other), in data units.
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ddpm", help="class-conditioned DDPM on 2-D moons with classifier-free guidance (train, sample)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=Path("runs/ddpm"), help="run directory (default runs/ddpm)")
    common.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0], metavar="W",
                        help="guidance weights to sample at, each >= 0 (default 0 1 3)")
    common.add_argument("--n-per-class", type=int, default=500, help="samples per moon and weight (default 500)")
    common.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the samples (default 0)")

    train_parser = actions.add_parser("train", parents=[common], help="train, then sample (samples.png, metrics.json)")
    train_parser.add_argument("--preset", default="default", help="run size: default or tiny (default: default)")
    train_parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    train_parser.add_argument("--schedule", help="beta schedule: linear or cosine (default linear)")
    train_parser.add_argument("--timesteps", type=int, help="diffusion steps T (default: the preset's)")
    train_parser.add_argument("--noise", type=float, default=0.05, help="sd of the moons' noise (default 0.05)")
    train_parser.set_defaults(func=run_train)

    sample_parser = actions.add_parser("sample", parents=[common], help="samples.png and metrics.json of a trained run")
    sample_parser.set_defaults(func=run_sample)


def one_thread() -> None:
    """Run torch on one CPU thread: the denoiser's matrices are small (batch 256 x 128), so splitting each
    op over threads costs more than it saves (measured 15 ms/step on 1 thread; 2 threads were 10x slower
    on a busy 2-core machine). On a GPU the trainer uses the GPU either way."""
    import torch

    torch.set_num_threads(1)


def _report(metrics: dict) -> None:
    for row in metrics["guidance"]:
        print(f"w = {row['w']:g}: distance {row['distance']:.4f}, coverage {row['coverage']:.4f}, "
              f"accuracy {row['accuracy']:.3f}")


def run_train(args: argparse.Namespace) -> int:
    from fmblocks.apps.ddpm_moons import train, write_samples
    from fmblocks.diffusion import check_guidance

    guidance = [check_guidance(w) for w in args.guidance]  # fail before training, not after
    one_thread()
    overrides = {k: v for k, v in (("schedule", args.schedule), ("timesteps", args.timesteps)) if v is not None}
    out = train(args.out, preset_name=args.preset, steps=args.steps, seed=args.seed, noise=args.noise, **overrides)
    metrics = write_samples(out, guidance=tuple(guidance), n_per_class=args.n_per_class, seed=args.seed)
    _report(metrics)
    print(f"wrote {out} (checkpoint/, log.csv, loss.png, samples.png, metrics.json)")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from fmblocks.apps.ddpm_moons import write_samples
    from fmblocks.diffusion import check_guidance

    guidance = [check_guidance(w) for w in args.guidance]
    one_thread()
    metrics = write_samples(args.out, guidance=tuple(guidance), n_per_class=args.n_per_class, seed=args.seed)
    _report(metrics)
    print(f"wrote {args.out / 'samples.png'}, {args.out / 'metrics.json'}")
    return 0
