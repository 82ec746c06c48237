"""`fmblocks sample`: continue a prompt with a decoder trained by `fmblocks train`.

    fmblocks sample --checkpoint runs/tiny --prompt "def " --max-new-tokens 64 --temperature 0.8 --top-k 40

CHECKPOINT is a run directory (or its checkpoint/ directory); the tokenizer saved beside it decodes
the result, which is printed as prompt + continuation. --temperature 0 is greedy decoding; --seed
makes sampling reproducible. An empty prompt starts from the tokenizer's end-of-text token.
"""

import argparse
from pathlib import Path

import torch

from fmblocks.errors import CheckpointError, ConfigError, DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="generate text from a trained decoder", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="run directory or checkpoint directory")
    parser.add_argument("--prompt", default="", help="text to continue (default: empty)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    parser.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="keep the smallest set of tokens with probability mass >= p")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--num-samples", type=int, default=1, help="independent continuations (default 1)")
    parser.add_argument("--tokenizer", help="tokenizer name or file (default: the one saved with the run)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.commands.train import TOKENIZER_FILE
    from fmblocks.generation import generate
    from fmblocks.tokenizers import load
    from fmblocks.training.checkpoint import load_checkpoint, resolve_checkpoint
    from fmblocks.training.corpus import END_OF_TEXT, special_id

    directory = resolve_checkpoint(args.checkpoint)
    model, config, _ = load_checkpoint(directory)
    if config.arch != "decoder":
        raise ConfigError(f"{directory}: sampling needs a decoder checkpoint, this one is an {config.arch}")
    if args.tokenizer:
        tokenizer = load(args.tokenizer)
    else:
        saved = [path for path in (directory / TOKENIZER_FILE, directory.parent / TOKENIZER_FILE) if path.is_file()]
        if not saved:
            raise CheckpointError(f"{directory}: no {TOKENIZER_FILE} beside the checkpoint; pass --tokenizer")
        tokenizer = load(saved[0])
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} ids but the model {config.vocab_size}")
    ids = list(tokenizer.encode(args.prompt)) if args.prompt else []
    if not ids:
        start = special_id(tokenizer, *END_OF_TEXT)
        if start is None:
            raise DataError("an empty prompt needs an end-of-text token to start from; pass --prompt")
        ids = [start]
    prompt = torch.tensor([ids] * args.num_samples)  # (num_samples, T0)
    generator = torch.Generator().manual_seed(args.seed)
    tokens = generate(model, prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                      top_p=args.top_p, generator=generator)
    skip = 0 if args.prompt else 1  # the start token stands for "no prompt"
    print("\n---\n".join(tokenizer.decode(row[skip:]) for row in tokens.tolist()))
    return 0
