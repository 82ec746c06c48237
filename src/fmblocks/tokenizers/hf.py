"""1 · The tokenizer of a Hugging Face model directory: tokenizer.json (or vocab.txt) -> an fmblocks tokenizer.

`fmblocks.tokenizers.load(directory)` reads it through the existing tokenizers:

    BPE, byte-level (GPT-2 layout)   ByteLevel pre-tokenizer (GPT-2's regex) or a Split regex followed by
                                     ByteLevel, no normaliser; merges in id order after the 256 bytes
                                     (id = rank) and added tokens after the vocabulary
                                     -> BPETokenizer(tokens, pattern, special_tokens)
    WordPiece (BERT)                 BertNormalizer + BertPreTokenizer, "##" continuation -> WordPieceTokenizer
    no tokenizer.json, a vocab.txt   -> WordPieceTokenizer.from_vocab_file

Limits (refused with TokenizerError naming what was found): Unigram and SentencePiece-style BPE (byte
fallback), vocabularies whose special tokens come before the merged tokens (the HF trainers' order),
merges out of id order, post-processors that add tokens to byte-level BPE (Llama-3's BOS).
"""

import json
from pathlib import Path

from fmblocks.errors import CorruptFileError, TokenizerError
from fmblocks.tokenizers.base import Tokenizer
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS, char_to_byte
from fmblocks.tokenizers.wordpiece import WordPieceTokenizer

SUPPORTED = "byte-level BPE (GPT-2 layout), WordPiece"


def load_directory(path: Path) -> Tokenizer:
    """The tokenizer of the model directory `path` (see the module docstring)."""
    file = path / "tokenizer.json"
    if not file.exists():
        if (path / "vocab.txt").exists():
            return WordPieceTokenizer.from_vocab_file(path / "vocab.txt")
        raise FileNotFoundError(f"{path}: a model directory without tokenizer.json or vocab.txt")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        kind = document["model"]["type"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptFileError(f"{file}: not a tokenizer.json ({err!r})") from None
    if kind == "WordPiece":
        return _wordpiece(document, file)
    if kind == "BPE":
        return _byte_level_bpe(document, file)
    raise TokenizerError(f"{file}: tokenizer model {kind!r} is not supported; supported: {SUPPORTED}")


def _refuse(file: Path, what: str) -> TokenizerError:
    return TokenizerError(f"{file}: {what} is not supported; supported: {SUPPORTED}")


def _by_id(vocab: dict[str, int], file: Path) -> list[str]:
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise CorruptFileError(f"{file}: vocabulary ids are not 0..{len(tokens) - 1}")
    return tokens


def _wordpiece(document: dict, file: Path) -> WordPieceTokenizer:
    model, normalizer = document["model"], document.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer" or model.get("continuing_subword_prefix", "##") != "##":
        raise _refuse(file, f"WordPiece with normalizer {normalizer.get('type')!r}")
    return WordPieceTokenizer(_by_id(model["vocab"], file), lowercase=bool(normalizer.get("lowercase", True)),
                              unk_token=model.get("unk_token", "[UNK]"),
                              max_input_chars_per_word=model.get("max_input_chars_per_word", 100))


def _pattern(pre: dict | None, file: Path) -> str:
    """The split regex of a byte-level pre-tokenizer: ByteLevel(use_regex) or Split(regex) + ByteLevel."""
    steps = (pre or {}).get("pretokenizers", [pre]) if (pre or {}).get("type") == "Sequence" else [pre]
    if len(steps) == 1 and (steps[0] or {}).get("type") == "ByteLevel" and steps[0].get("use_regex", True) \
            and not steps[0].get("add_prefix_space", False):
        return "gpt2"
    if len(steps) == 2 and steps[0].get("type") == "Split" and "Regex" in steps[0].get("pattern", {}) \
            and steps[0].get("behavior") == "Isolated" and steps[1].get("type") == "ByteLevel" \
            and not steps[1].get("use_regex", True) and not steps[1].get("add_prefix_space", False):
        regex = steps[0]["pattern"]["Regex"]
        return next((name for name, known in SPLIT_PATTERNS.items() if known == regex), regex)
    raise _refuse(file, f"BPE pre-tokenizer {json.dumps(pre)[:120]}")


def _byte_level_bpe(document: dict, file: Path) -> BPETokenizer:
    model = document["model"]
    if document.get("normalizer") or model.get("byte_fallback") or model.get("continuing_subword_prefix"):
        raise _refuse(file, "BPE with a normaliser, byte fallback or a subword prefix (SentencePiece style)")
    post = document.get("post_processor") or {}
    adds_nothing = post.get("type") == "TemplateProcessing" and not post.get("special_tokens") \
        and post.get("single") == [{"Sequence": {"id": "A", "type_id": 0}}]
    if post and post.get("type") != "ByteLevel" and not adds_nothing:
        raise _refuse(file, f"byte-level BPE with post-processor {post.get('type')!r}")
    pattern = _pattern(document.get("pre_tokenizer"), file)
    specials = {t["content"]: t["id"] for t in document.get("added_tokens", [])}
    vocab = {token: i for token, i in model["vocab"].items() if i not in specials.values()}
    try:
        tokens = [bytes(char_to_byte[c] for c in token) for token in _by_id(vocab, file)]
    except (KeyError, CorruptFileError):
        raise _refuse(file, "BPE whose special tokens come before its tokens, or whose tokens are not byte-level") \
            from None
    merged = [vocab.get("".join(m.split(" ")) if isinstance(m, str) else "".join(m)) for m in model.get("merges", [])]
    if merged != sorted(merged) or None in merged:
        raise _refuse(file, "BPE whose merges are not in id order (rank = id)")
    try:
        return BPETokenizer(tokens, pattern=pattern, special_tokens=specials)
    except ValueError as err:
        raise _refuse(file, f"this BPE vocabulary ({err})") from None
