"""1 · The tokenizer of a Hugging Face model directory: tokenizer.json (or vocab.json + merges.txt, or vocab.txt)
-> an fmblocks tokenizer.

`fmblocks.tokenizers.load(directory)` reads it, choosing the fastest kind that gives HF's ids:

    BPE, byte-level (GPT-2 layout)   ByteLevel pre-tokenizer (GPT-2's regex) or a Split regex followed by
                                     ByteLevel, no normaliser; merges in id order after the 256 bytes
                                     (id = rank), added tokens after the vocabulary, no framing
                                     -> BPETokenizer(tokens, pattern, special_tokens)  (C fast path)
    WordPiece (BERT)                 BertNormalizer + BertPreTokenizer, "##" continuation -> WordPieceTokenizer
    any other BPE, or Unigram        -> PipelineTokenizer (pipeline.py): Llama-3 and Qwen2 (Split regex,
                                     ByteLevel, BOS from the post-processor), Llama-2 and Mistral
                                     (Metaspace or Prepend+Replace "▁", byte fallback <0xNN>), T5-style
                                     Unigram with sentencepiece's `Precompiled` rules (T5, mT5, ALBERT,
                                     XLNet), and files from HF's trainers (special tokens first)
    no tokenizer.json: vocab.json + merges.txt (GPT-2's original files) -> read as GPT2Tokenizer does
                                     (`vocab_merges_document`), then as the tokenizer.json above; the
                                     special tokens named in tokenizer_config.json / special_tokens_map.json
    no tokenizer.json, a vocab.txt   -> WordPieceTokenizer.from_vocab_file

Refused with TokenizerError naming what was found: other models (WordLevel), stages the pipeline does
not implement, truncation or padding in the file; beside vocab.json + merges.txt, a tokenizer_class other
than GPT-2's (RoBERTa's <s> A </s> framing, for one) and `add_bos_token`/`add_eos_token`.
"""

import json
import re
from pathlib import Path

from fmblocks.errors import ConfigError, CorruptFileError, TokenizerError
from fmblocks.tokenizers.base import Tokenizer
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.pipeline import ADDED_DEFAULTS, PipelineTokenizer
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS, char_to_byte
from fmblocks.tokenizers.wordpiece import WordPieceTokenizer

SUPPORTED = "BPE (byte-level, or SentencePiece-style with byte fallback), WordPiece, Unigram"


def load_directory(path: Path) -> Tokenizer:
    """The tokenizer of the model directory `path` (see the module docstring)."""
    file = path / "tokenizer.json"
    if not file.exists():
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            return _from_document(vocab_merges_document(path), path / "vocab.json")
        if (path / "vocab.txt").exists():
            return WordPieceTokenizer.from_vocab_file(path / "vocab.txt")
        raise FileNotFoundError(f"{path}: a model directory without tokenizer.json, vocab.json + merges.txt "
                                f"or vocab.txt")
    try:
        document = json.loads(file.read_text(encoding="utf-8"), parse_float=serde_float)
        document["model"]["type"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptFileError(f"{file}: not a tokenizer.json ({err!r})") from None
    return _from_document(document, file)


def _from_document(document: dict, file: Path) -> Tokenizer:
    kind = document["model"]["type"]
    if kind == "WordPiece":
        return _wordpiece(document, file)
    if kind == "BPE":
        try:
            return _byte_level_bpe(document, file)
        except TokenizerError:  # not the GPT-2 layout: the general pipeline
            pass
    if kind in ("BPE", "Unigram"):
        return _pipeline(document, file)
    raise TokenizerError(f"{file}: tokenizer model {kind!r} is not supported; supported: {SUPPORTED}")


# -- vocab.json + merges.txt (GPT-2's original files) -------------------------------------------------
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _json_file(file: Path) -> dict:
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{file}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def _content(token: object) -> str | None:
    """A special token as the config files write it: a string or {"content": ...} (an AddedToken)."""
    return token.get("content") if isinstance(token, dict) else token if isinstance(token, str) else None


def vocab_merges_document(path: Path) -> dict:
    """The tokenizer.json document that transformers' GPT2Tokenizer builds from `path`'s vocab.json and
    merges.txt: byte-level BPE, GPT-2's split, ByteLevel decoder, and as added special tokens those that
    tokenizer_config.json (its `added_tokens_decoder` and *_token keys) and special_tokens_map.json name,
    at their vocabulary id or, when not in the vocabulary, after it."""
    vocab = _json_file(path / "vocab.json")
    if not all(isinstance(i, int) for i in vocab.values()):
        raise CorruptFileError(f"{path / 'vocab.json'}: token ids must be integers")
    lines = (path / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [line.split(" ") for index, line in enumerate(lines)
              if line.strip() and not (index == 0 and line.startswith("#version"))]
    if any(len(merge) != 2 for merge in merges):
        raise CorruptFileError(f"{path / 'merges.txt'}: each line after '#version' is two tokens and a space")
    config, special_map = _json_file(path / "tokenizer_config.json"), _json_file(path / "special_tokens_map.json")
    named = config.get("tokenizer_class")
    if named not in (None, "GPT2Tokenizer", "GPT2TokenizerFast"):
        raise TokenizerError(f"{path / 'tokenizer_config.json'}: tokenizer_class {named!r} from vocab.json + "
                             f"merges.txt is not supported (GPT2Tokenizer is); a tokenizer.json would be read")
    for option in ("add_bos_token", "add_eos_token"):
        if config.get(option):
            raise TokenizerError(f"{path / 'tokenizer_config.json'}: {option}=true is not supported for "
                                 f"vocab.json + merges.txt; supported: {SUPPORTED}")
    ids: dict[str, int] = {}
    for key, token in sorted((config.get("added_tokens_decoder") or {}).items(), key=lambda kv: int(kv[0])):
        if token.get("special", True) and _content(token):
            ids[_content(token)] = int(key)
    names = [_content(source.get(key)) for source in (config, special_map) for key in SPECIAL_KEYS]
    names += [_content(token) for source in (config, special_map)
              for key in ("additional_special_tokens", "extra_special_tokens")
              for token in (source.get(key) or [])]
    size = max(vocab.values(), default=-1) + 1
    for name in names:
        if name and name not in ids:
            ids[name] = vocab[name] if name in vocab else size
            size = max(size, ids[name] + 1)
    byte_level = {"type": "ByteLevel", "add_prefix_space": bool(config.get("add_prefix_space", False)),
                  "trim_offsets": True, "use_regex": True}
    added = [{"id": i, "content": name, **ADDED_DEFAULTS} for name, i in sorted(ids.items(), key=lambda kv: kv[1])]
    return {"added_tokens": added, "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None,
            "decoder": byte_level, "model": {"type": "BPE", "vocab": {**vocab, **ids}, "merges": merges}}


def _pipeline(document: dict, file: Path) -> PipelineTokenizer:
    for option in ("truncation", "padding"):
        if document.get(option):
            raise _refuse(file, f"a tokenizer.json with {option} set")
    try:
        return PipelineTokenizer.from_dict(document)
    except TokenizerError as err:
        raise TokenizerError(f"{file}: {err}") from None
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise CorruptFileError(f"{file}: malformed tokenizer.json ({err!r})") from None


_DECIMAL = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?")


def serde_float(text: str) -> float:
    """A JSON number read as HF `tokenizers` reads it (serde_json without `float_roundtrip`): the digits as an
    integer, rounded to a float, then divided (or multiplied) by the float 10^k. That can be one unit in
    the last place off the correctly rounded value Python's `float` gives, and Unigram ties follow it.

    >>> serde_float("-7.3954483415925285"), float("-7.3954483415925285")
    (-7.395448341592528, -7.3954483415925285)
    """
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return float(text)
    sign, whole, fraction, exponent = match.groups()
    digits = whole + (fraction or "")
    power = int(exponent or 0) - len(fraction or "")
    if int(digits) >= 1 << 64 or abs(power) > 308:
        return float(text)  # serde's slower paths: taken as correctly rounded
    value = float(int(digits))
    value = value * float(f"1e{power}") if power >= 0 else value / float(f"1e{-power}")
    return -value if sign else value


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
    post = document.get("post_processor") or {}
    if post.get("type") not in ("BertProcessing", "TemplateProcessing"):
        raise _refuse(file, f"WordPiece without BERT's [CLS] A [SEP] post-processor (found {post.get('type')!r})")
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
    added = document.get("added_tokens", [])
    if any(not t.get("special", True) or t.get("lstrip") or t.get("rstrip") for t in added):
        raise _refuse(file, "byte-level BPE with non-special or stripping added tokens in the fast kind")
    specials = {t["content"]: t["id"] for t in added}
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
