"""`fmblocks prepare`: tokenize text or FASTA files once, on every core, into memory-mapped token shards.

    fmblocks prepare --data corpus/ --tokenizer gpt2 --out data/corpus
    fmblocks train --preset gpt2-style --data data/corpus --out runs/x     # streams windows from the shards

OUT receives index.json (documents, tokens, shards, the tokenizer's fingerprint, the held-out split),
tokenizer.json and shard-NNNNN.bin (raw uint16 ids, uint32 for vocabularies over 65,536). The
held-out documents (--eval-fraction, chosen whole) are what `fmblocks train` evaluates on. --tokenizer
takes what `fmblocks train --tokenizer` takes (default gpt2 for text, dna-kmer for FASTA; char builds
one id per character of the corpus). A killed prepare, run again with the same command, keeps the
shards it finished and makes the rest, byte for byte the same; OUT is locked while it runs.
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="tokenize a corpus into memory-mapped token shards",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, type=Path, help="text/FASTA files or directories")
    parser.add_argument("--tokenizer", help="pretrained name, saved tokenizer file, tokenizer kind, or char")
    parser.add_argument("--out", type=Path, required=True, help="directory of the shards")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="share of documents held out (default 0.1)")
    parser.add_argument("--shard-mb", type=float, default=4, help="source megabytes per shard (default 4)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.commands.train import tokenizer_from
    from fmblocks.data.prepare import corpus_characters, corpus_files, prepare
    from fmblocks.training.lock import run_lock

    with run_lock(args.out):
        _, fasta = corpus_files(args.data)
        name = args.tokenizer or ("dna-kmer" if fasta else "gpt2")
        characters = corpus_characters(args.data) if name == "char" and not Path(name).exists() else None
        tokenizer = tokenizer_from(name, [characters] if characters is not None else None)
        index = prepare(args.data, tokenizer, args.out, eval_fraction=args.eval_fraction,
                        shard_bytes=max(1, int(args.shard_mb * 2**20)), workers=args.workers, progress=args.progress)
    print(f"{index['documents']} documents ({index['eval_documents']} held out), {index['tokens']:,} tokens "
          f"({index['eval_tokens']:,} held out) in {len(index['shards'])} {index['dtype']} shards -> {args.out}")
    return 0
