"""`fmblocks fill-mask`: the most likely fillers of each mask in a text, from a masked-LM encoder.

    fmblocks fill-mask --model bert-mlm-dir "The capital of France is [MASK]."
    fmblocks fill-mask --model esm2-dir "MKT<mask>LLILAVAAALA" --top-k 3
    fmblocks fill-mask --model runs/esm "MKT[MASK]LL"           a run of `fmblocks train --objective mlm`

MODEL is a Hugging Face directory (BertForMaskedLM, EsmForMaskedLM) or an fmblocks run. Write the mask as
the tokenizer's mask token ([MASK], <mask>); [MASK] works for every tokenizer. For each mask, in order,
the output has a line "mask N (token T)" and then the top-k fillers, one per line: probability, token.
The text is framed ([CLS] ... [SEP], <cls> ... <eos>) for Hugging Face checkpoints and runs converted from
them, as they were trained; a run of `fmblocks train` reads it as its training data was encoded.
A checkpoint without a masked-LM head (BertModel, such as the shipped all-MiniLM-L6-v2) is refused.
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fill-mask", help="fill [MASK] tokens with a masked-LM encoder",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", help="text with one or more mask tokens")
    parser.add_argument("--model", type=Path, required=True, help="a Hugging Face directory or an fmblocks run")
    parser.add_argument("--top-k", type=int, default=5, help="fillers shown per mask (default 5)")
    parser.add_argument("--tokenizer", help="tokenizer name or file (default: the model's own)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.models.fill_mask import check_masked_lm, fill_mask
    from fmblocks.models.sources import open_model, trained_framed

    model, tokenizer = open_model(args.model, arch="encoder", tokenizer=args.tokenizer)
    check_masked_lm(model)
    fills = fill_mask(model, tokenizer, args.text, top_k=args.top_k, add_special_tokens=trained_framed(args.model))
    for number, fill in enumerate(fills, start=1):
        print(f"mask {number} (token {fill.position})")
        for candidate in fill.candidates:
            print(f"  {candidate.probability:.4f}  {candidate.text}")
    return 0
