"""The lecture's tokenizer properties, measured on a corpus: a table and a chart.

For each tokenizer, over the same samples (lines of text, or any input its `encode` accepts):

- lossless: share of samples with decode(encode(x)) == x (tensors: same shape and values);
- refused: share of samples `encode` rejected with a TokenizerError (e.g. an unknown character);
- efficiency: tokens per sample, and for text bytes per token (UTF-8) and tokens per word
  (whitespace-separated words);
- universality: unknown-token rate, the share of tokens that are the tokenizer's unknown token
  (None when it has none: every input is representable or refused);
- stability (text): one random one-character edit (substitute, insert or delete, with characters
  drawn from the corpus) per sample; `token_edits` is the mean Levenshtein distance between the
  token sequences before and after, `changed_share` that distance over the original's length;
- numbers (text): mean tokens for a random number of 1..6 digits on its own, and how "123456" is cut.

Counts leave out framing tokens (special tokens other than the unknown one, e.g. BERT's [CLS] and
[SEP]). Everything is deterministic for a given `seed`. Tokenizers need only `encode`/`decode`.
"""

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fmblocks.errors import DataError, TokenizerError
from fmblocks.files import write_json
from fmblocks.tokenizers.base import Tokenizer

REPORT_FORMAT = "fmblocks-tokenizer-report"
NUMBER_DIGITS = range(1, 7)
_UNKNOWN_NAME = re.compile(r"^[<\[|]*unk[>\]|]*$", re.IGNORECASE)


@dataclass
class TokenizerReport:
    """One tokenizer's properties on one set of samples (None: does not apply or could not be measured)."""

    name: str
    samples: int
    lossless: float
    refused: float
    tokens_per_sample: float
    bytes_per_token: float | None = None
    tokens_per_word: float | None = None
    unknown_rate: float | None = None
    token_edits: float | None = None
    changed_share: float | None = None
    tokens_per_number: dict[int, float] | None = None
    number_split: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corpus_lines(texts: Iterable[str], *, max_lines: int | None = 1000, seed: int = 0) -> list[str]:
    """Non-blank lines of `texts` (a deterministic random sample of `max_lines`, in corpus order)."""
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError("the corpus has no non-blank lines to measure tokenizers on")
    if max_lines is None or len(lines) <= max_lines:
        return lines
    keep = sorted(random.Random(seed).sample(range(len(lines)), max_lines))
    return [lines[i] for i in keep]


def unknown_id(tokenizer: Tokenizer) -> int | None:
    """The id of the unknown token: `tokenizer.unk_id`, or a special named unk, <unk>, [UNK], <|unk|>."""
    found = getattr(tokenizer, "unk_id", None)
    if isinstance(found, int):
        return found
    return next((i for name, i in tokenizer.special_tokens.items() if _UNKNOWN_NAME.match(name)), None)


def levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    """Edit distance (insertions, deletions, substitutions); the common prefix and suffix are skipped first."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[len(a) - 1 - end] == b[len(b) - 1 - end]:
        end += 1
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def one_character_edit(text: str, alphabet: Sequence[str], rng: random.Random) -> str:
    """`text` with one character substituted, inserted or deleted at a random position."""
    operation = rng.choice(("substitute", "insert", "delete") if text else ("insert",))
    if operation == "insert":
        position = rng.randrange(len(text) + 1)
        return text[:position] + rng.choice(alphabet) + text[position:]
    position = rng.randrange(len(text))
    if operation == "delete" or len(alphabet) < 2:
        return text[:position] + text[position + 1:]
    replacement = rng.choice([c for c in alphabet if c != text[position]])
    return text[:position] + replacement + text[position + 1:]


class _Measure:
    """Encode/decode through one tokenizer; token lists leave out framing tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.unk = unknown_id(tokenizer)
        self.framing = set(tokenizer.special_tokens.values()) - {self.unk}

    def encode(self, x: Any) -> Any:
        """The tokenizer's ids for x, or None if it refuses x."""
        try:
            return self.tokenizer.encode(x)
        except TokenizerError:
            return None

    def content(self, ids: Any) -> list[int]:
        flat = ids.flatten().tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [i for i in flat if i not in self.framing]

    def tokens(self, x: Any) -> list[int] | None:
        ids = self.encode(x)
        return None if ids is None else self.content(ids)

    def round_trips(self, x: Any, ids: Any) -> bool:
        decoded = self.tokenizer.decode(ids)
        if isinstance(x, torch.Tensor) or isinstance(decoded, torch.Tensor):
            return (isinstance(x, torch.Tensor) and isinstance(decoded, torch.Tensor) and decoded.shape == x.shape
                    and torch.equal(decoded.to(x.dtype), x))
        return bool(decoded == x)


def measure(tokenizer: Tokenizer, samples: Sequence[Any], *, name: str = "", seed: int = 0,
            numbers_per_length: int = 50) -> TokenizerReport:
    """All properties of `tokenizer` on `samples` (module docstring)."""
    if not samples:
        raise DataError("no samples to measure the tokenizer on")
    m = _Measure(tokenizer)
    encoded = [(x, m.encode(x)) for x in samples]
    accepted = [(x, ids) for x, ids in encoded if ids is not None]
    lossless = sum(m.round_trips(x, ids) for x, ids in accepted)
    content = [(x, m.content(ids)) for x, ids in accepted]
    tokens = sum(len(ids) for _, ids in content)
    report = TokenizerReport(
        name=name or getattr(tokenizer, "kind", type(tokenizer).__name__),
        samples=len(samples),
        lossless=lossless / len(samples),
        refused=1 - len(accepted) / len(samples),
        tokens_per_sample=tokens / len(accepted) if accepted else math.nan,
        unknown_rate=None if m.unk is None else sum(ids.count(m.unk) for _, ids in content) / max(tokens, 1),
    )
    if content and all(isinstance(x, str) for x in samples):
        _text_properties(report, m, content, tokens, random.Random(seed), numbers_per_length)
    return report


def _text_properties(report: TokenizerReport, m: _Measure, content: list[tuple[str, list[int]]], tokens: int,
                     rng: random.Random, numbers_per_length: int) -> None:
    report.bytes_per_token = sum(len(x.encode("utf-8")) for x, _ in content) / max(tokens, 1)
    report.tokens_per_word = tokens / max(sum(len(x.split()) for x, _ in content), 1)
    alphabet = sorted({c for x, _ in content for c in x})
    distances, shares = [], []
    for x, ids in content:
        edited = m.tokens(one_character_edit(x, alphabet, rng))
        if edited is not None:
            distance = levenshtein(ids, edited)
            distances.append(distance)
            shares.append(distance / max(len(ids), 1))
    if distances:
        report.token_edits = sum(distances) / len(distances)
        report.changed_share = sum(shares) / len(shares)
    per_length: dict[int, float] = {}
    for digits in NUMBER_DIGITS:
        low = 0 if digits == 1 else 10 ** (digits - 1)
        counts = [m.tokens(str(rng.randint(low, 10**digits - 1))) for _ in range(numbers_per_length)]
        if any(c is None for c in counts):
            return  # the tokenizer refuses digits
        per_length[digits] = sum(len(c or ()) for c in counts) / numbers_per_length
    report.tokens_per_number = per_length
    report.number_split = [m.tokenizer.decode([i]) for i in m.tokens("123456") or []]


def compare(tokenizers: Mapping[str, Tokenizer], samples: Sequence[Any], *, seed: int = 0) -> list[TokenizerReport]:
    """`measure` for each named tokenizer on the same samples."""
    return [measure(tokenizer, samples, name=name, seed=seed) for name, tokenizer in tokenizers.items()]


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def report_table(reports: Sequence[TokenizerReport]) -> str:
    """A plain-text table, one row per tokenizer."""
    header = ["tokenizer", "lossless", "refused", "bytes/tok", "tok/word", "unk", "edits", "changed",
              "tokens for 1..6 digits", "123456"]
    rows = [header]
    for r in reports:
        numbers = " ".join(f"{r.tokens_per_number[d]:.1f}" for d in NUMBER_DIGITS) if r.tokens_per_number else "-"
        split = "|".join(r.number_split) if r.number_split else "-"
        rows.append([r.name, _cell(r.lossless, ".1%"), _cell(r.refused, ".1%"), _cell(r.bytes_per_token, ".2f"),
                     _cell(r.tokens_per_word, ".2f"), _cell(r.unknown_rate, ".2%"), _cell(r.token_edits, ".2f"),
                     _cell(r.changed_share, ".1%"), numbers, split])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_chart(reports: Sequence[TokenizerReport], path: str | Path) -> None:
    """A PNG: one bar panel per property, and tokens per number against its digit count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmblocks.files import atomic_writer

    names = [r.name for r in reports]
    panels = [("lossless round trip (share of lines)", "lossless"), ("bytes per token (higher: shorter)",
              "bytes_per_token"), ("unknown-token rate", "unknown_rate"),
              ("token edits per 1-char edit (lower: stabler)", "token_edits"), ("tokens per word", "tokens_per_word")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, field) in zip(axes.flat, panels):
        values = [getattr(r, field) for r in reports]
        ax.bar(names, [0.0 if v is None else v for v in values], color="tab:blue")
        for i, v in enumerate(values):
            ax.annotate("n/a" if v is None else f"{v:.3g}", (i, 0 if v is None else v), ha="center", va="bottom")
        ax.set_title(title)
        ax.margins(y=0.15)
        ax.tick_params(axis="x", rotation=20)
    ax = axes.flat[-1]
    for r in reports:
        if r.tokens_per_number:
            ax.plot(list(NUMBER_DIGITS), [r.tokens_per_number[d] for d in NUMBER_DIGITS], marker="o", label=r.name)
    ax.set(title="tokens per number", xlabel="digits", ylabel="tokens")
    ax.legend()
    fig.tight_layout()
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def write_report(reports: Sequence[TokenizerReport], path: str | Path) -> None:
    """The reports as JSON (atomic, versioned)."""
    write_json(path, {"reports": [r.to_dict() for r in reports]}, fmt=REPORT_FORMAT)
