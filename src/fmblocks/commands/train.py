"""`fmblocks train`: train a model from a preset or config on local text or FASTA files.

    fmblocks train --preset gpt2-style --set n_layers=2 d_model=128 --data corpus/ --tokenizer gpt2 \\
        --objective clm --out runs/tiny --steps 200
    fmblocks train --preset bert-style --set n_layers=2 --data proteins.fasta --objective mlm --out runs/esm
    torchrun --nproc_per_node 2 -m fmblocks.cli train ...      # same command, 2 processes (DDP)
    fmblocks train --out runs/tiny --data corpus/ --steps 400 --resume   # continue a run

The model's vocab_size is the tokenizer's. --tokenizer takes a pretrained name (gpt2, ...), a saved
tokenizer file, or a tokenizer kind that has defaults (protein, dna-kmer = 6-mers). FASTA files
(.fa, .fasta, ...) default to protein for --objective mlm and dna-kmer for clm; text to gpt2. OUT
receives tokenizer.json, checkpoint/, log.csv and loss.png; `fmblocks sample --checkpoint OUT` reads
them back. Every TrainConfig field is a flag (--batch-size, --lr, --warmup-steps, ...).
"""

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from fmblocks.errors import CheckpointError, ConfigError
from fmblocks.training.checkpoint import CHECKPOINT_DIR, CONFIG_FILE, resolve_checkpoint
from fmblocks.training.config import TrainConfig
from fmblocks.training.runs import TOKENIZER_FILE

ARCH_OF = {"clm": "decoder", "mlm": "encoder"}
FASTA_TOKENIZERS = {"mlm": "protein", "clm": "dna-kmer"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model on local text or FASTA files", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--config", type=Path, help="model config JSON (ModelConfig fields, or a saved config.json)")
    model.add_argument("--preset", help="model preset name (gpt2-style, llama-style, bert-style, ...)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override model config fields; VALUE is JSON (2, 0.1, true, \"rms\") or a bare string")
    parser.add_argument("--data", nargs="+", required=True, type=Path, help="text/FASTA files or directories")
    parser.add_argument("--tokenizer", help="pretrained name or saved tokenizer file (default: see above)")
    parser.add_argument("--objective", choices=list(ARCH_OF), default="clm",
                        help="clm: next-token prediction (decoder); mlm: masked-LM (encoder)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--context", type=int, help="clm window length (default: the model's max_len)")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="share of the data held out (default 0.1)")
    parser.add_argument("--truncate", action="store_true", help="mlm: cut sequences longer than max_len")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        flag, default = "--" + field.name.replace("_", "-"), getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"(default {default})")
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=float, nargs=len(default), default=default, help=f"(default {default})")
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    parser.set_defaults(func=run)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["n_layers=2", "norm=rms"] -> {"n_layers": 2, "norm": "rms"} (values parsed as JSON when they are)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def tokenizer_from(name: str) -> Any:
    """A pretrained tokenizer, a saved tokenizer file, or a tokenizer kind built with its defaults."""
    from fmblocks.tokenizers import PRETRAINED, TOKENIZERS, load

    if name in PRETRAINED or Path(name).exists() or name not in TOKENIZERS:
        return load(name)
    try:
        return TOKENIZERS.get(name)()
    except TypeError:
        raise ConfigError(f"tokenizer kind {name!r} has no defaults; save one to a file and pass its path") from None


def model_config_from(args: argparse.Namespace, vocab_size: int) -> Any:
    """The ModelConfig the flags ask for, with the tokenizer's vocab_size."""
    from fmblocks.models import ModelConfig, preset

    if args.preset:
        base = preset(args.preset)
    else:
        document = json.loads(args.config.read_text(encoding="utf-8"))
        base = ModelConfig.load(args.config) if "format" in document else ModelConfig.from_dict(document)
    config = base.replace(**{**parse_overrides(args.set), "vocab_size": vocab_size})
    if config.arch != ARCH_OF[args.objective]:
        raise ConfigError(f"--objective {args.objective} trains a {ARCH_OF[args.objective]}, but the config's arch is {config.arch!r}")
    return config


def run(args: argparse.Namespace) -> int:
    from fmblocks.models import ModelConfig, build_model
    from fmblocks.tokenizers import load
    from fmblocks.training.corpus import causal_lm_data, masked_lm_data, read_documents
    from fmblocks.training.distributed import init_distributed, shutdown
    from fmblocks.training.trainer import Trainer

    train_config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if not 0 <= args.eval_fraction < 1:
        raise ConfigError(f"--eval-fraction must be in [0, 1), got {args.eval_fraction}")
    dist = init_distributed(train_config.device)
    documents, fasta = read_documents(args.data)
    if args.resume:
        directory = resolve_checkpoint(args.out)
        tokenizer = load(args.out / TOKENIZER_FILE)
        saved = ModelConfig.load(directory / CONFIG_FILE)
        model_config = model_config_from(args, tokenizer.vocab_size) if args.preset or args.config else saved
    else:
        if (args.out / CHECKPOINT_DIR).exists():
            raise CheckpointError(f"{args.out} already holds a checkpoint; pass --resume to continue it, or another --out")
        if not (args.preset or args.config):
            raise ConfigError("fmblocks train needs --preset NAME or --config FILE (or --resume)")
        tokenizer = tokenizer_from(args.tokenizer or (FASTA_TOKENIZERS[args.objective] if fasta else "gpt2"))
        model_config = model_config_from(args, tokenizer.vocab_size)
    if args.objective == "clm":
        train, held_out = causal_lm_data(documents, tokenizer, context=args.context or model_config.max_len,
                                         eval_fraction=args.eval_fraction)
    else:
        train, held_out = masked_lm_data(documents, tokenizer, max_len=model_config.max_len, per_document=fasta,
                                         eval_fraction=args.eval_fraction, truncate=args.truncate, seed=train_config.seed)
    torch.manual_seed(train_config.seed)
    trainer = Trainer(build_model(model_config), train, config=train_config, eval_data=held_out,
                      model_config=model_config, out_dir=args.out)
    if args.resume:
        trainer.resume()
    elif dist.is_main:
        tokenizer.save(args.out / TOKENIZER_FILE)
    try:
        history = trainer.fit()
    finally:
        shutdown()
    if dist.is_main and history:
        last = history[-1]
        evaluated = [row["eval_loss"] for row in history if row["eval_loss"] is not None]
        print(f"step {last['step']}: train loss {last['train_loss']:.4f}"
              + (f", eval loss {evaluated[-1]:.4f}" if evaluated else "") + f" -> {args.out}")
    return 0
