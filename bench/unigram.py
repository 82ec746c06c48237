"""Benchmark: fmblocks' Unigram trainer vs SentencePiece's unigram trainer on the same lines.

Corpus: the non-blank lines of `builtin_corpus(max_bytes)` (pydoc topics, then stdlib sources); every
10th line is held out, the rest trains both. SentencePiece is set to take the text as it is, like ours:
normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix (our Metaspace
"always"), split_by_whitespace, character_coverage=1.0, one thread, only <unk> as a special piece.

Reported per vocabulary size, on the held-out lines:
    overlap           share of SentencePiece's pieces that our vocabulary has too
    tokens_per_word   tokens over whitespace-separated words, each model encoding with its own Viterbi
    log_likelihood_per_word   sum of the chosen pieces' scores (each model's own log-probabilities; an
                      unknown token scores min - 10) over the words: higher is a likelier segmentation
    unknown_rate      share of tokens that are <unk>
    train_seconds     wall seconds to train (ours pure Python, SentencePiece C++ on one thread)

Writes bench/results/unigram.json and unigram.png.

    .venv/bin/python -m bench.unigram [--mb 0.5] [--vocab 2000 4000]
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bench.measure import write_results  # noqa: E402
from fmblocks.data.text import builtin_corpus  # noqa: E402
from fmblocks.tokenizers.unigram_train import train_unigram  # noqa: E402


def split_lines(mb: float) -> tuple[list[str], list[str]]:
    lines = [line for doc in builtin_corpus(int(mb * 1e6)) for line in doc.splitlines() if line.strip()]
    return [x for i, x in enumerate(lines) if i % 10], lines[::10]


def measure(ids_per_line: list[list[int]], scores: list[float], unk: int, words: int) -> dict:
    unk_score = min(scores) - 10
    tokens = sum(map(len, ids_per_line))
    log_p = sum(unk_score if i == unk else scores[i] for ids in ids_per_line for i in ids)
    unknown = sum(i == unk for ids in ids_per_line for i in ids)
    return {"tokens_per_word": round(tokens / words, 4), "log_likelihood_per_word": round(log_p / words, 4),
            "unknown_rate": round(unknown / max(tokens, 1), 6)}


def ours(train: list[str], held: list[str], vocab_size: int) -> tuple[dict, set[str]]:
    start = time.perf_counter()
    tok = train_unigram(train, vocab_size, progress=False)
    seconds = time.perf_counter() - start
    ids = [tok.encode(line) for line in held]
    result = measure(ids, tok.model.scores, tok.unk_id, sum(len(x.split()) for x in held))
    return {**result, "train_seconds": round(seconds, 2)}, {p for p, _ in tok.model.pieces[1:]}


def sentencepiece(train: list[str], held: list[str], vocab_size: int) -> tuple[dict, set[str]]:
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "train.txt"
        corpus.write_text("\n".join(train), encoding="utf-8")
        start = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(folder) / "m"), vocab_size=vocab_size, model_type="unigram",
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
            split_by_whitespace=True, character_coverage=1.0, byte_fallback=False, num_threads=1,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, max_sentence_length=1 << 16, minloglevel=2,
            hard_vocab_limit=False)
        seconds = time.perf_counter() - start
        sp = spm.SentencePieceProcessor(model_file=str(Path(folder) / "m.model"))
    scores = [sp.GetScore(i) for i in range(sp.GetPieceSize())]
    scores[sp.unk_id()] = max(scores)  # the unknown piece's own score is not a log-probability; `measure` replaces it
    ids = [sp.encode(line) for line in held]
    result = measure(ids, scores, sp.unk_id(), sum(len(x.split()) for x in held))
    pieces = {sp.IdToPiece(i) for i in range(sp.GetPieceSize()) if i != sp.unk_id()}
    return {**result, "train_seconds": round(seconds, 2), "vocab_size": sp.GetPieceSize()}, pieces


def bench_compare(mb: float, sizes: list[int]) -> dict:
    train, held = split_lines(mb)
    out = {}
    for size in sizes:
        mine, our_pieces = ours(train, held, size)
        theirs, their_pieces = sentencepiece(train, held, size)
        out[str(size)] = {"ours": mine, "sentencepiece": theirs,
                          "overlap": round(len(our_pieces & their_pieces) / len(their_pieces), 4)}
        print(size, out[str(size)], flush=True)
    return out


def plot_compare(ax, result: dict) -> None:
    labels = list(result)
    for k, impl in enumerate(("ours", "sentencepiece")):
        bars = ax.bar([i + 0.4 * k for i in range(len(labels))], [result[v][impl]["tokens_per_word"] for v in labels],
                      0.4, label=impl)
        ax.bar_label(bars, labels=[f"logp/w {result[v][impl]['log_likelihood_per_word']:.2f}" for v in labels],
                     fontsize=7)
    ax.set_xticks([i + 0.2 for i in range(len(labels))], [f"vocab {v}\noverlap {result[v]['overlap']:.0%}"
                                                          for v in labels])
    ax.set_ylabel("held-out tokens per word (labels: log-likelihood per word)")
    ax.set_title("Unigram: fmblocks vs SentencePiece")
    ax.legend()


SECTIONS = {"compare": plot_compare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=0.5, help="corpus size in MB")
    parser.add_argument("--vocab", type=int, nargs="+", default=[2000, 4000])
    args = parser.parse_args()
    results = {
        "command": f"python -m bench.unigram --mb {args.mb} --vocab {' '.join(map(str, args.vocab))}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
        "corpus": {"MB": args.mb},
        "compare": bench_compare(args.mb, args.vocab),
    }
    write_results("unigram", results, SECTIONS)


if __name__ == "__main__":
    main()
