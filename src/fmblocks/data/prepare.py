"""Tokenize a corpus once, on every core, into the token shards of `shards.py`.

    index = prepare(["corpus/"], tokenizer, "data/", eval_fraction=0.1)   # then: fmblocks train --data data/

The plan: the corpus files (text or FASTA, found as `fmblocks train` finds them), in their order, are
grouped into pieces of about `shard_bytes` of source each; piece k becomes shard k. A worker process
reads a piece's documents (one per text file, one per FASTA record, as `training.corpus.read_documents`
reads them), encodes each whole with the tokenizer, follows it with the end-of-text id when the
tokenizer has one, and writes the shard atomically (temporary file + rename). So the shards, put end to
end, are exactly the token stream `fmblocks train` builds from the same files.

Held-out documents are chosen whole: record r of file number f is held out when
blake2b(f, r) / 2**64 < eval_fraction, a rule each worker applies alone (about that share of the
documents, spread over the corpus; a corpus of a few documents may hold none out).

Resume: after every shard, in order, the main process rewrites index.json (atomically) with the plan
and the shards done so far. A prepare killed at any point, run again with the same arguments, keeps the
shards its index lists (after checking their checksums) and makes the others, which come out
byte-identical because each depends only on its piece; other arguments over a partial or complete
directory are refused. Limits: a document is never split, so one huge file is one task (split very
large files to use every core), and a worker holds one piece's tokens in memory.
"""

import hashlib
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fmblocks.data.shards import INDEX_FILE, INDEX_FORMAT, TOKENIZER_FILE, checksum, fingerprint, token_dtype
from fmblocks.data.text import read_text, text_files
from fmblocks.errors import ConfigError, DataError
from fmblocks.files import read_json, write_bytes, write_json

SHARD_BYTES = 4 << 20  # source bytes per shard (about 2 MB of uint16 tokens for GPT-2 BPE on English)


def is_held_out(file_number: int, record: int, eval_fraction: float) -> bool:
    """Whether record `record` of corpus file `file_number` is held out (see the module docstring).

    >>> [is_held_out(f, 0, 0.5) for f in range(6)]
    [True, True, False, False, True, True]
    """
    digest = hashlib.blake2b(f"{file_number}:{record}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < eval_fraction


def corpus_files(paths: list[str | Path]) -> tuple[list[Path], bool]:
    """(the corpus files in order, whether they are FASTA); text and FASTA together are refused."""
    from fmblocks.training.corpus import is_fasta

    files = text_files(paths)
    if not files:
        raise DataError("no text files found in the given paths")
    fasta = [path for path in files if is_fasta(path)]
    if fasta and len(fasta) != len(files):
        raise DataError(f"mix of FASTA ({len(fasta)}) and text ({len(files) - len(fasta)}) files; prepare one kind")
    return files, bool(fasta)


def plan_pieces(sizes: list[int], shard_bytes: int) -> list[list[int]]:
    """Consecutive file numbers grouped into pieces of at least `shard_bytes` (the last may be smaller).

    >>> plan_pieces([5, 5, 5, 20, 1], 10)
    [[0, 1], [2, 3], [4]]
    """
    pieces, current, size = [], [], 0
    for number, file_size in enumerate(sizes):
        current.append(number)
        size += file_size
        if size >= shard_bytes:
            pieces.append(current)
            current, size = [], 0
    return pieces + ([current] if current else [])


def documents_of(path: Path, fasta: bool) -> list[str]:
    """The documents of one corpus file: its text, or its FASTA records' sequences."""
    if not fasta:
        return [read_text(path)]
    from fmblocks.tokenizers.bio import read_fasta

    return [sequence for _, sequence in read_fasta(path)]


def prepare(
    paths: list[str | Path],
    tokenizer: Any,
    out: str | Path,
    *,
    eval_fraction: float = 0.1,
    shard_bytes: int = SHARD_BYTES,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write (or finish) the shards of `paths` in `out`; returns the index. See the module docstring."""
    from fmblocks.training.corpus import END_OF_TEXT, special_id

    if not 0 <= eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    out = Path(out)
    files, fasta = corpus_files(paths)
    sizes = [path.stat().st_size for path in files]
    end = special_id(tokenizer, *END_OF_TEXT)
    dtype = token_dtype(tokenizer.vocab_size)
    plan = {"sources": [[str(path), size] for path, size in zip(files, sizes)], "fasta": fasta,
            "shard_bytes": shard_bytes, "eval_fraction": eval_fraction, "fingerprint": fingerprint(tokenizer)}
    index = {"complete": False, "plan": plan,
             "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "fingerprint": plan["fingerprint"]},
             "dtype": dtype, "end_of_text": end, "shards": []}
    done = _reusable_shards(out, plan)
    if done is not None and done.get("complete"):
        return done
    index["shards"] = done["shards"] if done is not None else []
    tokenizer.save(out / TOKENIZER_FILE)
    write_json(out / INDEX_FILE, index, fmt=INDEX_FORMAT)
    pieces = plan_pieces(sizes, shard_bytes)
    tasks = [(k, [(n, files[n]) for n in piece], fasta, str(out), dtype, end, eval_fraction)
             for k, piece in enumerate(pieces) if k >= len(index["shards"])]
    finished = sum(sizes[n] for piece in pieces[: len(index["shards"])] for n in piece)
    bar = tqdm(total=sum(sizes), initial=finished, unit="B", unit_scale=True, desc="prepare",
               disable=not progress, dynamic_ncols=True)
    workers = min(workers or os.cpu_count() or 1, max(1, len(tasks)))
    if workers == 1:
        _set_tokenizer(tokenizer)
        results = map(_make_shard, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(tokenizer, os.getpid()))
        results = pool.map(_make_shard, tasks)
    try:
        for shard in results:  # in piece order
            index["shards"].append(shard)
            write_json(out / INDEX_FILE, index, fmt=INDEX_FORMAT)
            bar.update(shard["source_bytes"])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    shards = index["shards"]
    index.update(complete=True, documents=sum(s["documents"] for s in shards),
                 eval_documents=sum(s["eval_documents"] for s in shards),
                 tokens=sum(s["tokens"] for s in shards), eval_tokens=sum(s["eval_tokens"] for s in shards),
                 source_bytes=sum(sizes))
    write_json(out / INDEX_FILE, index, fmt=INDEX_FORMAT)
    return index


def _reusable_shards(out: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The index already in `out` cut to its shards that check out (None when there is none); an index of
    another plan is refused."""
    if not (out / INDEX_FILE).is_file():
        return None
    index = read_json(out / INDEX_FILE, fmt=INDEX_FORMAT)
    if index.get("plan") != plan:
        old = index.get("plan") or {}
        changed = [name for name in plan if old.get(name) != plan[name]]
        raise ConfigError(f"{out} holds data prepared from other sources or settings ({', '.join(changed)} differ); "
                          "prepare into another --out, or remove it first")
    kept = []
    for shard in index["shards"]:
        path = out / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"] or checksum(path) != shard["blake2b"]:
            break
        kept.append(shard)
    if len(kept) < len(index["shards"]):
        index["complete"] = False
    index["shards"] = kept
    return index


_TOKENIZER: Any = None


def _set_tokenizer(tokenizer: Any) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer


def _start_worker(tokenizer: Any, parent: int) -> None:
    """A pool worker: hold the tokenizer, and (Linux) die with the prepare that started it, so that a killed
    prepare leaves no worker behind."""
    _set_tokenizer(tokenizer)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker outlives a SIGKILLed parent until its task ends
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _make_shard(task: tuple) -> dict[str, Any]:
    """Encode one piece and write its shard (training documents, then held-out ones); returns its index entry."""
    number, files, fasta, out, dtype, end, eval_fraction = task
    train, held, documents, held_documents = [], [], 0, 0
    for file_number, path in files:
        for record, document in enumerate(documents_of(path, fasta)):
            ids = list(_TOKENIZER.encode(document)) + ([end] if end is not None else [])
            out_of_it = is_held_out(file_number, record, eval_fraction)
            (held if out_of_it else train).append(np.asarray(ids, dtype=dtype))
            documents += 1
            held_documents += out_of_it
    arrays = train + held
    data = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    payload = data.astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()  # little-endian on any machine
    name = f"shard-{number:05d}.bin"
    write_bytes(Path(out) / name, payload)
    return {"file": name, "sources": [n for n, _ in files], "documents": documents, "eval_documents": held_documents,
            "tokens": len(data), "eval_tokens": int(sum(map(len, held))), "bytes": len(payload),
            "source_bytes": sum(path.stat().st_size for _, path in files),
            "blake2b": hashlib.blake2b(payload, digest_size=16).hexdigest()}


def corpus_characters(paths: list[str | Path]) -> list[str]:
    """The sorted characters of a corpus' documents (for a char tokenizer), reading one file at a time."""
    files, fasta = corpus_files(paths)
    found: set[str] = set()
    for path in files:
        for document in documents_of(path, fasta):
            found.update(document)
    return sorted(found)
