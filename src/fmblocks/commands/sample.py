"""`fmblocks sample`: continue a prompt with a decoder trained by `fmblocks train` (or a Hugging Face one).

    fmblocks sample --checkpoint runs/tiny --prompt "def " --max-new-tokens 64 --temperature 0.8 --top-k 40
    fmblocks sample --model hf-gpt2/ --prompt "Hello" --temperature 0     a Hugging Face directory

CHECKPOINT is a run directory (or its checkpoint/ directory); the tokenizer saved beside it decodes the
result, which is printed as prompt + continuation. --model takes a run too, or a Hugging Face decoder
directory (GPT-2, Llama, Mistral, Qwen2) with a tokenizer.json fmblocks reads. --temperature 0 is greedy
decoding; --seed makes sampling reproducible. An empty prompt starts from the tokenizer's end-of-text token.
Several --prompt options run as one batch (left-padded, each continued as if alone); the output holds
--num-samples continuations of each prompt in turn, separated by lines of "---".
"""

import argparse
from pathlib import Path

from fmblocks.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="generate text from a trained decoder", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="run directory or checkpoint directory")
    source.add_argument("--model", type=Path, help="a Hugging Face decoder directory or an fmblocks run")
    parser.add_argument("--prompt", action="append",
                        help="text to continue; repeat for several prompts in one batch (default: empty)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    parser.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="keep the smallest set of tokens with probability mass >= p")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--num-samples", type=int, default=1, help="independent continuations (default 1)")
    parser.add_argument("--tokenizer", help="tokenizer name or file (default: the one saved with the run)")
    parser.add_argument("--allow-special", action="store_true",
                        help="read special tokens written in the prompt (e.g. <|endoftext|>) as those tokens")
    parser.set_defaults(func=run)


def prompt_ids(tokenizer, text: str, *, allow_special: bool = False) -> tuple[list[int], int]:
    """The ids that start a sample of `text`, and how many of them stand for no text (1 for the empty prompt)."""
    from fmblocks.commands.tokenize import encode_text
    from fmblocks.training.corpus import END_OF_TEXT, special_id

    ids = encode_text(tokenizer, text, allow_special=allow_special) if text else []
    if ids:
        return ids, 0
    start = special_id(tokenizer, *END_OF_TEXT)
    if start is None:
        raise DataError("an empty prompt needs an end-of-text token to start from; pass --prompt")
    return [start], 1


def run(args: argparse.Namespace) -> int:
    import torch

    from fmblocks.generation import generate, left_pad
    from fmblocks.models.sources import open_model

    model, tokenizer = open_model(args.model or args.checkpoint, tokenizer=args.tokenizer, arch="decoder")
    starts = [prompt_ids(tokenizer, text, allow_special=args.allow_special)
              for text in args.prompt or [""] for _ in range(args.num_samples)]
    prompt, keep = left_pad([ids for ids, _ in starts])  # (rows, width) each
    width = prompt.shape[1]
    generator = torch.Generator().manual_seed(args.seed)
    tokens = generate(model, prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                      top_p=args.top_p, attention_mask=keep, generator=generator)
    texts = [tokenizer.decode(row[width - len(ids) + skip:]) for row, (ids, skip) in zip(tokens.tolist(), starts)]
    print("\n---\n".join(texts))
    return 0
