"""BERT normalisation and pre-tokenisation: the two stages before WordPiece.

Normalisation (`bert_normalize`), in this order, character by character:

1. clean: drop U+0000, U+FFFD and the control, format, surrogate and private-use characters
   (categories Cc, Cf, Cs, Co) except tab, newline and carriage return; unassigned code points
   stay; every whitespace character becomes a space;
2. CJK: put a space on both sides of each CJK ideograph, so each becomes its own word;
3. strip accents (when lowercasing): decompose (NFD) and drop the non-spacing marks (category Mn),
   "café" -> "cafe";
4. lowercase, one character at a time (so Greek capital sigma always becomes "σ", never the
   word-final "ς" that `str.lower` would choose).

Pre-tokenisation (`bert_pre_tokenize`) splits the normalised text on whitespace and makes every
punctuation character (ASCII punctuation, or any Unicode category P*) a word of its own:
"don't stop" -> ["don", "'", "t", "stop"].

This is the behaviour of HF `tokenizers`' BertNormalizer + BertPreTokenizer (the reference the
tests compare against), which follows Google's BERT except that it leaves unassigned characters
in and its CJK ranges skip U+2B820..U+2B91F; we do the same.
Speed: ASCII goes through one `bytes.translate`; only runs of non-ASCII characters, and chunks
with punctuation, take the per-character path (both cached).
Limits: character classes come from Python's `unicodedata` (Unicode 14.0 on Python 3.11); HF's
Rust crates use other Unicode versions, so they disagree on a few hundred code points of scripts
added after Unicode 9 (e.g. U+0890..U+089F, a format character here, is kept there).
"""

import re
import string
import unicodedata
from functools import lru_cache

# White_Space characters outside ASCII (the ASCII ones are in the translate table below).
_WHITESPACE = frozenset("\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                        "\u2028\u2029\u202f\u205f\u3000")
# CJK Unified Ideographs blocks and compatibility ideographs (not Hangul, Hiragana or Katakana).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})  # control, format, surrogate, private use
_NON_ASCII_RUN = re.compile(r"([^\x00-\x7f]+)")
_ASCII_WORD = re.compile(f"[^{re.escape(string.punctuation)}]+|[{re.escape(string.punctuation)}]")


def _ascii_table(lowercase: bool) -> bytes:
    """bytes.translate table for ASCII: tab/newline/return -> space, and A-Z -> a-z when lowercasing."""
    table = bytearray(range(256))
    for char in b"\t\n\r":
        table[char] = ord(" ")
    if lowercase:
        table[ord("A"):ord("Z") + 1] = bytes(range(ord("a"), ord("z") + 1))
    return bytes(table)


_ASCII_TABLES = {lower: _ascii_table(lower) for lower in (True, False)}
_ASCII_CONTROLS = bytes(c for c in [*range(32), 0x7F] if c not in b"\t\n\r")


def _normalize_ascii(text: str, lowercase: bool) -> str:
    """Steps 1 and 4 for pure ASCII text (the other steps change nothing there), at C speed."""
    return text.encode("ascii").translate(_ASCII_TABLES[lowercase], _ASCII_CONTROLS).decode("ascii")


def is_cjk(char: str) -> bool:
    """True for a CJK ideograph (the characters BERT makes words of their own)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def is_punctuation(char: str) -> bool:
    """ASCII punctuation (including symbols such as $ + < = > ^ ` | ~) or a Unicode P* character."""
    return char in string.punctuation or unicodedata.category(char).startswith("P")


@lru_cache(maxsize=1 << 16)
def _normalize_run(run: str, lowercase: bool, strip_accents: bool) -> str:
    """Steps 1-4 of the module docstring on a run of non-ASCII characters."""
    kept = []
    for char in run:
        if char == "\ufffd" or unicodedata.category(char) in _REMOVED_CATEGORIES:
            continue
        if char in _WHITESPACE:
            kept.append(" ")
        elif is_cjk(char):
            kept.append(f" {char} ")
        else:
            kept.append(char)
    text = "".join(kept)
    if strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    if lowercase:
        text = "".join(c.lower() for c in text)
    return text


@lru_cache(maxsize=1 << 16)
def _split_punctuation(chunk: str) -> tuple[str, ...]:
    """Words of a whitespace-free chunk: each punctuation character becomes a word of its own."""
    if chunk.isascii():
        return tuple(_ASCII_WORD.findall(chunk))
    return tuple("".join(f" {c} " if is_punctuation(c) else c for c in chunk).split())


def bert_normalize(text: str, *, lowercase: bool = True, strip_accents: bool | None = None) -> str:
    """BERT normalisation (module docstring); `strip_accents` defaults to `lowercase`."""
    if text.isascii():
        return _normalize_ascii(text, lowercase)
    strip = lowercase if strip_accents is None else strip_accents
    parts = _NON_ASCII_RUN.split(text)  # ASCII at even positions, non-ASCII runs at odd ones
    parts[0::2] = [_normalize_ascii(part, lowercase) for part in parts[0::2]]
    parts[1::2] = [_normalize_run(part, lowercase, strip) for part in parts[1::2]]
    return "".join(parts)


def bert_pre_tokenize(text: str) -> list[str]:
    """Split normalised text into words on whitespace, each punctuation character a word of its own."""
    words: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():  # letters and digits only: no punctuation inside
            words.append(chunk)
        else:
            words += _split_punctuation(chunk)
    return words
