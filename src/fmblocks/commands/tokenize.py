"""`fmblocks tokenize`: train, use and compare tokenizers.

    fmblocks tokenize train --kind bpe|wordpiece|char|word --vocab-size N --out tok.json [FILES...]
    fmblocks tokenize encode --tokenizer gpt2 "Hello world"          ids, one line (--file F: a file)
    fmblocks tokenize decode --tokenizer tok.json 15496 995          the text
    fmblocks tokenize report --tokenizers gpt2 cl100k_base bert-base-uncased --out DIR [--corpus FILES]

Without FILES (or --corpus), the built-in corpus is used: Python's pydoc topics and standard
library sources, the first --max-bytes of them. Directories are searched for text files.
--tokenizer takes a pretrained name (gpt2, cl100k_base, bert-base-uncased) or a saved file.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from fmblocks.errors import ConfigError, DataError, TokenizerError

if TYPE_CHECKING:  # imported where used, so that --help does not load torch
    from fmblocks.tokenizers import Tokenizer

KINDS = ("bpe", "wordpiece", "char", "word")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenize", help="train, use and compare tokenizers", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")

    train = actions.add_parser("train", help="train a tokenizer on text files (or the built-in corpus)")
    train.add_argument("files", nargs="*", type=Path, help="text files or directories (default: built-in corpus)")
    train.add_argument("--kind", choices=KINDS, required=True, help="tokenizer kind")
    train.add_argument("--vocab-size", type=int, help="vocabulary size (optional for char: all characters)")
    train.add_argument("--out", type=Path, required=True, help="where to save the tokenizer (JSON)")
    train.add_argument("--min-frequency", type=int, help="least count of a merged pair / kept word")
    train.add_argument("--pattern", default="gpt4", help="bpe: split pattern, gpt2 or gpt4 (default gpt4)")
    train.add_argument("--cased", action="store_true", help="wordpiece: keep case and accents")
    train.add_argument("--max-bytes", type=int, default=5_000_000, help="size of the built-in corpus (default 5 MB)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train)

    encode = actions.add_parser("encode", help="text -> token ids")
    encode.add_argument("text", nargs="?", help="the text (or --file)")
    encode.add_argument("--file", type=Path, help="encode the contents of this UTF-8 file")
    encode.add_argument("--tokenizer", required=True, help="pretrained name or saved tokenizer file")
    encode.add_argument("--allow-special", action="store_true", help="match special tokens written in the text")
    encode.add_argument("--pieces", action="store_true", help="also print each token's text")
    encode.set_defaults(func=run_encode)

    decode = actions.add_parser("decode", help="token ids -> text")
    decode.add_argument("ids", nargs="+", type=int, help="token ids")
    decode.add_argument("--tokenizer", required=True, help="pretrained name or saved tokenizer file")
    decode.set_defaults(func=run_decode)

    report = actions.add_parser("report", help="compare tokenizers on a corpus: table, PNG and JSON")
    report.add_argument("--tokenizers", nargs="+", required=True, help="pretrained names or saved files")
    report.add_argument("--corpus", nargs="*", type=Path, default=[], help="text files or directories")
    report.add_argument("--lines", type=int, default=1000, help="lines sampled from the corpus (default 1000)")
    report.add_argument("--max-bytes", type=int, default=2_000_000, help="size of the built-in corpus (default 2 MB)")
    report.add_argument("--out", type=Path, required=True, help="directory for report.json and report.png")
    report.add_argument("--seed", type=int, default=0, help="seed of the line sample and the edits")
    report.set_defaults(func=run_report)


def _texts(files: list[Path], max_bytes: int) -> list[str]:
    from fmblocks.data.text import builtin_corpus, iter_texts

    if not files:
        return builtin_corpus(max_bytes=max_bytes)
    try:
        return list(iter_texts(files))
    except FileNotFoundError as err:
        raise DataError(str(err)) from None


def _load(name_or_path: str) -> Tokenizer:
    from fmblocks.tokenizers import load

    try:
        return load(name_or_path)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None


def train_tokenizer(kind: str, texts: list[str], vocab_size: int | None, *, min_frequency: int | None = None,
                    pattern: str = "gpt4", lowercase: bool = True, progress: bool = True) -> Tokenizer:
    """Dispatch to the library's trainer for `kind` (bpe, wordpiece, char, word)."""
    if kind == "char":
        from fmblocks.tokenizers.simple import train_char

        return train_char(texts, vocab_size=vocab_size, unk_token="<unk>")
    if vocab_size is None:
        raise ConfigError(f"--vocab-size is required for a {kind} tokenizer")
    options = {} if min_frequency is None else {"min_frequency": min_frequency}
    if kind == "bpe":
        from fmblocks.tokenizers.bpe import train_bpe

        return train_bpe(texts, vocab_size, pattern=pattern, progress=progress, **options)
    if kind == "wordpiece":
        from fmblocks.tokenizers.wordpiece import train_wordpiece

        return train_wordpiece(texts, vocab_size, lowercase=lowercase, progress=progress, **options)
    if kind == "word":
        from fmblocks.tokenizers.simple import train_word

        return train_word(texts, vocab_size, **options)
    raise ConfigError(f"unknown tokenizer kind {kind!r}; known: {', '.join(KINDS)}")


def run_train(args: argparse.Namespace) -> int:
    texts = _texts(args.files, args.max_bytes)
    tokenizer = train_tokenizer(args.kind, texts, args.vocab_size, min_frequency=args.min_frequency,
                                pattern=args.pattern, lowercase=not args.cased, progress=not args.no_progress)
    tokenizer.save(args.out)
    print(f"{args.kind} tokenizer with {tokenizer.vocab_size} tokens, trained on "
          f"{sum(len(t.encode('utf-8')) for t in texts):,} bytes, saved to {args.out}")
    return 0


def encode_text(tokenizer: Tokenizer, text: str, *, allow_special: bool) -> list[int]:
    """The ids of `text` as the commands encode it: special tokens written in the text (e.g. "<|endoftext|>")
    are refused, naming the `--allow-special` flag, unless `allow_special` matches them all."""
    matches_specials = "allowed_special" in inspect.signature(tokenizer.encode).parameters
    if allow_special and not matches_specials:
        raise ConfigError(f"a {tokenizer.kind} tokenizer matches no special tokens in text; drop --allow-special")
    if allow_special:
        return list(tokenizer.encode(text, allowed_special="all"))
    written = [token for token in tokenizer.special_tokens if token in text] if matches_specials else []
    if written:
        raise TokenizerError(f"the text contains the special token {written[0]!r}; pass --allow-special to encode it "
                             f"as id {tokenizer.special_tokens[written[0]]}, or remove it from the text")
    return list(tokenizer.encode(text))


def run_encode(args: argparse.Namespace) -> int:
    from fmblocks.data.text import read_text

    if args.text is None and args.file is None:
        raise ConfigError("nothing to encode: give the text as an argument or a file with --file")
    if args.text is not None and args.file is not None:
        raise ConfigError("give the text to encode either as an argument or with --file, not both")
    text = read_text(args.file) if args.file else args.text
    tokenizer = _load(args.tokenizer)
    ids = encode_text(tokenizer, text, allow_special=args.allow_special)
    print(" ".join(map(str, ids)))
    if args.pieces:
        print("|".join(tokenizer.decode([i]) for i in ids))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    print(_load(args.tokenizer).decode(args.ids))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from fmblocks.tokenizers.report import compare, corpus_lines, report_chart, report_table, write_report

    lines = corpus_lines(_texts(args.corpus, args.max_bytes), max_lines=args.lines, seed=args.seed)
    tokenizers = {name: _load(name) for name in args.tokenizers}
    reports = compare(tokenizers, lines, seed=args.seed)
    print(report_table(reports))
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(reports, args.out / "report.json")
    report_chart(reports, args.out / "report.png")
    print(f"{len(lines)} lines; wrote {args.out / 'report.json'} and {args.out / 'report.png'}")
    return 0
