"""1 · fmblocks tokenizers -> tokenizer.json, the file HF `tokenizers` (`Tokenizer.from_file`) and
transformers (`PreTrainedTokenizerFast`) load, giving the same ids:

    BPETokenizer        model BPE (vocab = the GPT-2 printable form of each token, merges in rank
                        order), pre-tokenizer ByteLevel (pattern "gpt2") or Split(regex) + ByteLevel,
                        decoder ByteLevel; special tokens as added tokens (in the vocabulary too)
    WordPieceTokenizer  BertNormalizer, BertPreTokenizer, WordPiece "##", [CLS] A [SEP] (B [SEP])
                        framing as TemplateProcessing, WordPiece decoder
    PipelineTokenizer   its own `to_dict()`, which is already that document (Unigram from
                        `train_unigram`, and every tokenizer.json `load` read into a pipeline)

HF re-numbers added tokens by the vocabulary when it reads a file (an added token's id is its id in
the model's vocabulary, else the next free one), so every special token is written into the model's
vocabulary as well, with its id. One regex detail: Oniguruma reads the GPT-4 pattern's `{1,3}+` as
"one or more runs of 1-3", so it is written `{1,3}` (the same split there).
"""

import json
import os
from pathlib import Path
from typing import Any

from fmblocks.errors import TokenizerError
from fmblocks.files import atomic_writer
from fmblocks.tokenizers.base import Tokenizer
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.pipeline import PipelineTokenizer
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS, byte_to_char
from fmblocks.tokenizers.wordpiece import WordPieceTokenizer


def added_token(content: str, i: int, *, special: bool = True) -> dict[str, Any]:
    """One entry of tokenizer.json's `added_tokens`."""
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def to_tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """The tokenizer.json document of `tokenizer` (see the module docstring for the kinds)."""
    if isinstance(tokenizer, PipelineTokenizer):
        body = tokenizer.to_dict()
    elif isinstance(tokenizer, BPETokenizer):
        body = _bpe(tokenizer)
    elif isinstance(tokenizer, WordPieceTokenizer):
        body = _wordpiece(tokenizer)
    else:
        raise TokenizerError(f"a {tokenizer.kind!r} tokenizer has no tokenizer.json form; "
                             "supported: bpe, wordpiece, pipeline (Unigram, loaded tokenizer.json files)")
    return {"version": "1.0", "truncation": None, "padding": None, **body}


def save_tokenizer_json(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write `tokenizer` as tokenizer.json at `path` (a directory gets path/tokenizer.json); return the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    with atomic_writer(path) as handle:
        handle.write(json.dumps(to_tokenizer_json(tokenizer), ensure_ascii=False, indent=1).encode("utf-8"))
    return path


def _printable(token: bytes) -> str:
    return "".join(byte_to_char[b] for b in token)


def _bpe(tokenizer: BPETokenizer) -> dict[str, Any]:
    vocab = {_printable(token): i for i, token in enumerate(tokenizer.tokens)}
    vocab |= tokenizer.special_tokens
    if tokenizer.pattern == "gpt2":
        pre: dict[str, Any] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        regex = SPLIT_PATTERNS.get(tokenizer.pattern, tokenizer.pattern).replace("{1,3}+", "{1,3}")
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    merges = [[_printable(a), _printable(b)] for a, b in tokenizer.merges]
    return {"added_tokens": [added_token(s, i) for s, i in sorted(tokenizer.special_tokens.items(), key=lambda x: x[1])],
            "normalizer": None, "pre_tokenizer": pre, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": merges}}


def _wordpiece(tokenizer: WordPieceTokenizer) -> dict[str, Any]:
    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    ids = tokenizer.token_to_id
    if cls not in ids or sep not in ids:
        raise TokenizerError(f"WordPiece export needs {cls!r} and {sep!r} in the vocabulary")

    def special(token: str, type_id: int = 0) -> dict[str, Any]:
        return {"SpecialToken": {"id": token, "type_id": type_id}}

    def sequence(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    post = {"type": "TemplateProcessing",
            "single": [special(cls), sequence("A", 0), special(sep)],
            "pair": [special(cls), sequence("A", 0), special(sep), sequence("B", 1), special(sep, 1)],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in (cls, sep)}}
    specials = sorted(tokenizer.special_tokens.items(), key=lambda x: x[1])
    return {"added_tokens": [added_token(s, i) for s, i in specials],
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                           "strip_accents": None, "lowercase": tokenizer.lowercase},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": post,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": tokenizer.unk_token, "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": tokenizer.max_input_chars_per_word, "vocab": ids}}
