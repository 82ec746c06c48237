"""From files on disk to training datasets: text or FASTA, tokenized, split into train and eval.

    documents, fasta = read_documents(["corpus/"])            # texts, or one sequence per FASTA record
    train, held_out = causal_lm_data(documents, tokenizer, context=128, eval_fraction=0.1)
    train, held_out = masked_lm_data(documents, tokenizer, max_len=128, eval_fraction=0.1, per_document=fasta)

Causal LM: every document is encoded and followed by the tokenizer's end-of-text token (if it has
one), the ids are concatenated, the last `eval_fraction` of the stream is held out, and both parts
are cut into windows of `context` tokens. Masked LM: with `per_document` (FASTA) every document is
one sequence; otherwise the stream is cut into sequences of `max_len` tokens. The last
`eval_fraction` of the sequences is held out. A held-out part too small for one example is dropped
(None). Special tokens are found by name: a special whose name contains "mask", "pad", or one of
"eos", "endoftext", "</s>", "sep" (end of text).
"""

from collections.abc import Iterable
from pathlib import Path

from fmblocks.data.text import iter_texts, text_files
from fmblocks.errors import DataError
from fmblocks.tokenizers.base import Tokenizer
from fmblocks.training.datasets import CausalLMWindows, MaskedLMDataset

FASTA_SUFFIXES = (".fa", ".fasta", ".faa", ".fna")
END_OF_TEXT = ("eos", "endoftext", "</s>", "sep")


def is_fasta(path: str | Path) -> bool:
    return Path(path).suffix.lower() in FASTA_SUFFIXES


def read_documents(paths: Iterable[str | Path]) -> tuple[list[str], bool]:
    """(documents, is_fasta): the texts of text files, or the sequences of FASTA records (not both)."""
    files = text_files(paths)
    fasta = [path for path in files if is_fasta(path)]
    if fasta and len(fasta) != len(files):
        raise DataError(f"mix of FASTA ({len(fasta)}) and text ({len(files) - len(fasta)}) files; train on one kind")
    if not fasta:
        return list(iter_texts(files)), False
    from fmblocks.tokenizers.bio import read_fasta

    sequences = [sequence for path in fasta for _, sequence in read_fasta(path)]
    if not any(sequences):
        raise DataError(f"no sequences in the FASTA files {[str(p) for p in fasta]}")
    return sequences, True


def special_id(tokenizer: Tokenizer, *words: str) -> int | None:
    """The id of the first special token whose name contains one of `words` (case-insensitive)."""
    for name, index in tokenizer.special_tokens.items():
        if any(word in name.lower() for word in words):
            return index
    return None


def causal_lm_data(
    documents: list[str], tokenizer: Tokenizer, *, context: int, eval_fraction: float = 0.1
) -> tuple[CausalLMWindows, CausalLMWindows | None]:
    """Next-token windows over the concatenated documents; the stream's tail is held out."""
    end = special_id(tokenizer, *END_OF_TEXT)
    ids: list[int] = []
    for encoded in tokenizer.encode_batch(documents):
        ids += list(encoded) + ([end] if end is not None else [])
    held = int(len(ids) * eval_fraction)
    if held < context + 1:
        return CausalLMWindows(ids, context), None
    return CausalLMWindows(ids[:-held], context), CausalLMWindows(ids[-held:], context)


def masked_lm_data(
    documents: list[str],
    tokenizer: Tokenizer,
    *,
    max_len: int,
    eval_fraction: float = 0.1,
    per_document: bool = False,
    truncate: bool = False,
    seed: int = 0,
) -> tuple[MaskedLMDataset, MaskedLMDataset | None]:
    """BERT-masked sequences (see the module docstring); the last sequences are held out."""
    mask = special_id(tokenizer, "mask")
    if mask is None:
        raise DataError(f"masked-LM training needs a tokenizer with a mask token; its specials are {sorted(tokenizer.special_tokens)}")
    pad = special_id(tokenizer, "pad")
    encoded = [list(ids) for ids in tokenizer.encode_batch(documents)]
    if per_document:
        sequences = encoded
    else:
        stream = [i for ids in encoded for i in ids]
        sequences = [stream[i : i + max_len] for i in range(0, len(stream), max_len)]
    held = int(len(sequences) * eval_fraction)
    settings = dict(vocab_size=tokenizer.vocab_size, mask_id=mask, pad_id=mask if pad is None else pad,
                    special_ids=tokenizer.special_tokens.values(), max_len=max_len, truncate=truncate, seed=seed)
    if held == 0:
        return MaskedLMDataset(sequences, **settings), None
    return MaskedLMDataset(sequences[:-held], **settings), MaskedLMDataset(sequences[-held:], **settings)
