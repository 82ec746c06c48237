"""Pre-tokenisation for byte-level BPE: split text into chunks, and the GPT-2 byte <-> character map.

BPE never merges across chunk boundaries, so the split pattern decides what a token can be:

    gpt2   ('s|'t|...) | ␣?letters | ␣?digits | ␣?other symbols | trailing spaces | spaces
    gpt4   as used by cl100k_base: case-insensitive contractions, a letter run with one leading
           non-letter, digits in groups of 1-3, symbols with their line breaks, newlines apart

Both patterns are tiktoken's strings (`\\p{L}`, `\\p{N}`, possessive quantifiers) for the `regex`
module. Python's `re` is 2-3x faster, but it knows no `\\p{..}`, and large classes outside the Basic
Multilingual Plane make it slow; so for these two patterns a `re` twin is generated with the BMP
members of `\\p{L}`, `\\p{N}` and `\\s` spelt out (taken from the `regex` module's own tables, so both
engines agree), and used on any text without astral characters. A raw user pattern runs on
`regex` only, and must match every character (checked: ConfigError otherwise).
Limits: `\\p{L}` and `\\p{N}` follow the `regex` module's Unicode tables, which can be newer than
tiktoken's. A code point that is unassigned in Python's own Unicode database (14.0 here) but a letter
for `regex` (e.g. U+3D000) splits differently from tiktoken, so its ids can differ. Assigned code
points split identically.

`BYTE_ORDER` is GPT-2's order of the 256 bytes (printable ones first); `byte_to_char`/`char_to_byte`
map each byte to a printable character, so byte strings can be written in JSON vocabularies.
"""

import re
from functools import cache

import regex

from fmblocks.errors import ConfigError

SPLIT_PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "gpt4": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
}

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_PATTERN_TOKEN = re.compile(r"\\p\{[LN]\}|\\[sS]|\\.|[][$]|.", re.DOTALL)


def _printable(byte: int) -> bool:
    return 33 <= byte <= 126 or 161 <= byte <= 172 or 174 <= byte <= 255


# GPT-2's map: printable bytes stand for themselves, the other 68 take the characters from U+0100 on.
_OTHER_BYTES = [b for b in range(256) if not _printable(b)]
byte_to_char: dict[int, str] = {b: chr(b) for b in range(256) if _printable(b)}
byte_to_char |= {b: chr(256 + i) for i, b in enumerate(_OTHER_BYTES)}
char_to_byte: dict[str, int] = {c: b for b, c in byte_to_char.items()}
BYTE_ORDER = bytes(sorted(range(256), key=lambda b: ord(byte_to_char[b])))  # printable bytes first


class Splitter:
    """`splitter(text) -> list[str]`: the chunks of `text`, in order; `pattern` is "gpt2", "gpt4" or a regex."""

    def __init__(self, pattern: str) -> None:
        self.name = pattern
        self.pattern = SPLIT_PATTERNS.get(pattern, pattern)
        try:
            self._full = regex.compile(self.pattern)
        except (regex.error, TypeError) as err:
            known = ", ".join(SPLIT_PATTERNS)
            raise ConfigError(f"split pattern {pattern!r} is neither a known name ({known}) nor a regex ({err})") from None
        self._bmp = _bmp_twin(self.pattern) if pattern in SPLIT_PATTERNS else None

    def __call__(self, text: str) -> list[str]:
        if self._bmp is not None:
            return (self._bmp if text.isascii() or _ASTRAL.search(text) is None else self._full).findall(text)
        # with groups in the pattern, findall would return the groups rather than the whole matches
        chunks = [m[0] for m in self._full.finditer(text)] if self._full.groups else self._full.findall(text)
        if sum(map(len, chunks)) != len(text):
            raise ConfigError(f"split pattern {self.pattern!r} skips characters in {text[:40]!r}; it must match every one")
        return chunks


@cache
def _bmp_twin(pattern: str) -> re.Pattern[str]:
    """The `re` pattern equal to the `regex` `pattern` on text without astral characters."""
    classes = {r"\p{L}": _bmp_members(r"\p{L}"), r"\p{N}": _bmp_members(r"\p{N}"), r"\s": _bmp_members(r"\s")}
    out, in_class = [], False
    for token in _PATTERN_TOKEN.findall(pattern):
        if token in classes:
            out.append(classes[token] if in_class else f"[{classes[token]}]")
        elif token == r"\S":
            out.append("[^" + classes[r"\s"] + "]")
        elif token == "$" and not in_class:
            out.append(r"\Z")  # `$` of `regex` also matches before a final newline; `\s++` makes that moot
        else:
            in_class = (in_class or token == "[") and token != "]"
            out.append(token)
    return re.compile("".join(out))


def _bmp_members(prop: str) -> str:
    """The BMP code points in `prop` according to `regex`, as a `re` character-class body of ranges."""
    found = [ord(c) for c in regex.findall(prop, "".join(map(chr, range(0x10000))))]
    ranges, start = [], found[0]
    for prev, cur in zip(found, found[1:] + [-1]):
        if cur != prev + 1:
            ranges.append(f"\\u{start:04x}" if start == prev else f"\\u{start:04x}-\\u{prev:04x}")
            start = cur
    return "".join(ranges)
