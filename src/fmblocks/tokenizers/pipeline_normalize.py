"""The stages before the model in a tokenizer.json pipeline: normaliser (text -> text) and pre-tokeniser
(text -> pieces). Each stage is plain data, a dict in the `tokenizer.json` schema of HF `tokenizers`,
so a pipeline saves and exports as it is:

    normalizers     NFC NFD NFKC NFKD, Lowercase, Prepend {prepend}, Replace {pattern, content},
                    Strip {strip_left, strip_right}, BertNormalizer, Sequence {normalizers},
                    Precompiled {precompiled_charsmap}  (SentencePiece's compiled rules: precompiled.py)
    pre-tokenizers  ByteLevel {add_prefix_space, use_regex}  (GPT-2's split, then bytes -> printable chars)
                    Split {pattern, behavior, invert}        (Llama-3's and Qwen2's regex, "Isolated")
                    Metaspace {replacement, prepend_scheme, split}   (SentencePiece's "▁" for spaces)
                    Whitespace, WhitespaceSplit, Digits {individual_digits}, BertPreTokenizer,
                    Sequence {pretokenizers}

A pre-tokeniser maps a list of pieces to a list of pieces (empty pieces are dropped, as HF does), and
each step works on every piece the previous one left, so ByteLevel's `add_prefix_space` applies per piece.
Regexes run on the `regex` module; `\\s`/`\\S` are read as Unicode White_Space, the class HF's Oniguruma
uses (Python's `\\s` also has U+001C..U+001F). Limits: other stage types are refused by
`check_normalizer`/`check_pre_tokenizer` naming the type (and a charsmap that does not parse);
`\\p{L}` follows `regex`'s Unicode tables, which may differ from HF's on the newest code points.
"""

import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Any

import regex

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize
from fmblocks.tokenizers.precompiled import charsmap
from fmblocks.tokenizers.pretokenize import byte_to_char

Stage = dict[str, Any]
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_BYTE_CHARS = [byte_to_char[b] for b in range(256)]


# -- normalisers ------------------------------------------------------------------------------------
def _replace(stage: Stage, text: str) -> str:
    return _compiled(stage["pattern"]).sub(lambda _: stage["content"], text)


def _strip(stage: Stage, text: str) -> str:
    if stage.get("strip_left", True):
        text = text.lstrip()
    return text.rstrip() if stage.get("strip_right", True) else text


NORMALIZERS: dict[str, Callable[[Stage, str], str]] = {
    "NFC": lambda _, t: unicodedata.normalize("NFC", t),
    "NFD": lambda _, t: unicodedata.normalize("NFD", t),
    "NFKC": lambda _, t: unicodedata.normalize("NFKC", t),
    "NFKD": lambda _, t: unicodedata.normalize("NFKD", t),
    "Lowercase": lambda _, t: t.lower(),
    "Prepend": lambda s, t: s["prepend"] + t if t else t,
    "Replace": _replace,
    "Strip": _strip,
    "BertNormalizer": lambda s, t: bert_normalize(t, lowercase=s.get("lowercase", True),
                                                  strip_accents=s.get("strip_accents")),
    "Precompiled": lambda s, t: charsmap(s["precompiled_charsmap"]).normalize(t),
    "Sequence": lambda s, t: _chain_text(s["normalizers"], t),
}


def _chain_text(stages: list[Stage], text: str) -> str:
    for stage in stages:
        text = normalize(stage, text)
    return text


def normalize(stage: Stage | None, text: str) -> str:
    """`text` through the normaliser `stage` (None: unchanged)."""
    return text if stage is None else NORMALIZERS[stage["type"]](stage, text)


# -- pre-tokenisers ---------------------------------------------------------------------------------
def split_by(pattern: "regex.Pattern[str]", piece: str, behavior: str, invert: bool = False) -> list[str]:
    """`piece` cut by the matches of `pattern`, the matches kept as HF's SplitDelimiterBehavior says.

    >>> split_by(regex.compile(" "), "a b", "MergedWithNext")
    ['a', ' b']
    """
    spans, end = [], 0  # (text, is_delimiter)
    for match in pattern.finditer(piece):
        if match.start() > end:
            spans.append((piece[end:match.start()], invert))
        spans.append((match[0], not invert))
        end = match.end()
    if end < len(piece):
        spans.append((piece[end:], invert))
    if behavior == "Removed":
        return [text for text, delimiter in spans if not delimiter and text]
    if behavior == "Isolated":
        return [text for text, _ in spans if text]
    if behavior == "MergedWithNext":  # HF folds from the right: a delimiter joins the span after it
        return [text[::-1] for text in _merge_into_last([(t[::-1], d) for t, d in reversed(spans)])][::-1]
    if behavior == "MergedWithPrevious":
        return _merge_into_last(spans)
    out: list[str] = []  # Contiguous: runs of delimiters become one piece
    previous = False
    for text, delimiter in spans:
        if delimiter == previous and out:
            out[-1] += text
        else:
            out.append(text)
        previous = delimiter
    return [text for text in out if text]


def _merge_into_last(spans: list[tuple[str, bool]]) -> list[str]:
    """Each delimiter appended to the span before it, unless that span is a delimiter too."""
    out: list[str] = []
    previous = False
    for text, delimiter in spans:
        if delimiter and not previous and out:
            out[-1] += text
        else:
            out.append(text)
        previous = delimiter
    return [text for text in out if text]


def _byte_level(stage: Stage, pieces: list[str]) -> list[str]:
    out = []
    for piece in pieces:
        if stage.get("add_prefix_space", True) and not piece.startswith(" "):
            piece = " " + piece
        parts = split_by(_compiled({"Regex": GPT2_REGEX}), piece, "Isolated") if stage.get("use_regex", True) \
            else [piece]
        out += ["".join(_BYTE_CHARS[b] for b in part.encode("utf-8")) for part in parts]
    return out


def _split(stage: Stage, pieces: list[str]) -> list[str]:
    pattern = _compiled(stage["pattern"])
    return [p for piece in pieces for p in split_by(pattern, piece, stage["behavior"], stage.get("invert", False))]


def _metaspace(stage: Stage, pieces: list[str], first: bool) -> list[str]:
    mark, scheme = stage.get("replacement", "\u2581"), stage.get("prepend_scheme", "always")
    out = []
    for index, piece in enumerate(pieces):
        piece = piece.replace(" ", mark)
        if not piece.startswith(mark) and (scheme == "always" or (scheme == "first" and first and index == 0)):
            piece = mark + piece
        out += split_by(regex.compile(regex.escape(mark)), piece, "MergedWithNext") if stage.get("split", True) \
            else [piece]
    return out


PRE_TOKENIZERS: dict[str, Callable[[Stage, list[str], bool], list[str]]] = {
    "ByteLevel": lambda s, p, _: _byte_level(s, p),
    "Split": lambda s, p, _: _split(s, p),
    "Metaspace": _metaspace,
    "Whitespace": lambda _, p, __: [w for piece in p for w in _compiled({"Regex": r"\w+|[^\w\s]+"}).findall(piece)],
    "WhitespaceSplit": lambda _, p, __: [w for piece in p for w in piece.split()],
    "Digits": lambda s, p, _: _split({"pattern": {"Regex": r"\p{N}" if s.get("individual_digits") else r"\p{N}+"},
                                      "behavior": "Isolated"}, p),
    "BertPreTokenizer": lambda _, p, __: [w for piece in p for w in bert_pre_tokenize(piece)],
    "Sequence": lambda s, p, first: _chain_pieces(s["pretokenizers"], p, first),
}


def _chain_pieces(stages: list[Stage], pieces: list[str], first: bool) -> list[str]:
    for stage in stages:
        pieces = pre_tokenize(stage, pieces, first=first)
    return pieces


def pre_tokenize(stage: Stage | None, pieces: list[str], *, first: bool = True) -> list[str]:
    """`pieces` through the pre-tokeniser `stage` (None: unchanged); `first`: the text's first segment
    (not after an added token), where Metaspace's prepend_scheme "first" adds its mark."""
    pieces = [p for p in pieces if p]
    return pieces if stage is None else [p for p in PRE_TOKENIZERS[stage["type"]](stage, pieces, first) if p]


# -- checking and patterns --------------------------------------------------------------------------
def check_normalizer(stage: Stage | None) -> None:
    """TokenizerError naming a normaliser type (or nested one) that `normalize` does not know."""
    _check(stage, NORMALIZERS, "normalizer", "normalizers")


def check_pre_tokenizer(stage: Stage | None) -> None:
    """TokenizerError naming a pre-tokeniser type, Split behaviour or pattern that is not supported."""
    _check(stage, PRE_TOKENIZERS, "pre-tokenizer", "pretokenizers")


def _check(stage: Stage | None, known: dict, what: str, nested: str) -> None:
    if stage is None:
        return
    kind = stage.get("type") if isinstance(stage, dict) else None
    if kind not in known:
        raise TokenizerError(f"{what} {kind!r} is not supported; supported: {', '.join(known)}")
    for inner in stage.get(nested, []) if kind == "Sequence" else []:
        _check(inner, known, what, nested)
    if kind == "Split" and stage.get("behavior") not in ("Removed", "Isolated", "MergedWithPrevious",
                                                         "MergedWithNext", "Contiguous"):
        raise TokenizerError(f"Split behavior {stage.get('behavior')!r} is not supported")
    if "pattern" in stage:
        _compiled(stage["pattern"])
    if kind == "Precompiled":
        charsmap(stage.get("precompiled_charsmap"))


@cache
def _compiled_cached(kind: str, source: str) -> "regex.Pattern[str]":
    if kind == "String":
        return regex.compile(regex.escape(source))
    try:
        return regex.compile(_white_space(source))
    except regex.error as err:
        raise TokenizerError(f"regex {source!r} does not compile ({err})") from None


def _compiled(pattern: dict[str, str]) -> "regex.Pattern[str]":
    """A stage's {"String": s} or {"Regex": r} pattern, compiled."""
    if not isinstance(pattern, dict) or len(pattern) != 1 or next(iter(pattern)) not in ("String", "Regex"):
        raise TokenizerError(f"a pattern is {{'String': ...}} or {{'Regex': ...}}, got {pattern!r}")
    (kind, source), = pattern.items()
    return _compiled_cached(kind, source)


def _white_space(source: str) -> str:
    r"""`source` with \s and \S spelt as Unicode White_Space (Oniguruma's \s), other escapes untouched."""
    return regex.sub(r"\\(.)", lambda m: {"s": r"\p{White_Space}", "S": r"\P{White_Space}"}.get(m[1], m[0]), source)
