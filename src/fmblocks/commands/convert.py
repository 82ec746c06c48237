"""`fmblocks convert`: a Hugging Face model directory into an fmblocks run, or a run into an HF directory.

    fmblocks convert hf-gpt2/ runs/gpt2         then: fmblocks sample --checkpoint runs/gpt2 ...
    fmblocks convert runs/tiny hf-tiny/         then: transformers.AutoModelForCausalLM.from_pretrained("hf-tiny")

The direction follows SRC: a directory whose config.json names a model_type is read as Hugging Face, anything
else as a run. DST must not exist or be empty; it appears whole or not at all. The model is written with the
same weights; the tokenizer too where it can be (the output says when it could not).
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="Hugging Face directory <-> fmblocks run", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="a Hugging Face model directory or an fmblocks run")
    parser.add_argument("dst", type=Path, help="where to write the other format (absent or empty)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.models.convert import convert

    notes = convert(args.src, args.dst)
    print(f"{notes[0]} -> {args.dst}")
    for note in notes[1:]:
        print(f"note: {note}")
    return 0
