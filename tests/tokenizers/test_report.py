"""Tokenizer report: each property computed by hand on small cases; table, chart and JSON files."""

import random
from typing import Any

import pytest
import torch

from fmblocks.errors import DataError
from fmblocks.files import read_json
from fmblocks.tokenizers.base import Tokenizer
from fmblocks.tokenizers.report import (
    REPORT_FORMAT, compare, corpus_lines, levenshtein, measure, one_character_edit, report_chart, report_table,
    unknown_id, write_report,
)
from fmblocks.tokenizers.simple import CharTokenizer, train_char, train_word
from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, WordPieceTokenizer

LINES = ["the cat sat", "a dog ran far", "42 is 6 x 7"]


def test_char_tokenizer_by_hand() -> None:
    tok = train_char(LINES + ["0123456789"])
    r = measure(tok, LINES, name="char")
    assert (r.name, r.samples, r.lossless, r.refused) == ("char", 3, 1.0, 0.0)
    # ASCII: one byte per character, one token per character
    assert r.bytes_per_token == 1.0
    # 11 + 13 + 11 = 35 tokens over 3 + 4 + 5 = 12 words
    assert r.tokens_per_sample == pytest.approx(35 / 3) and r.tokens_per_word == pytest.approx(35 / 12)
    assert r.unknown_rate is None  # no unknown token
    # any one-character edit changes exactly one token
    assert r.token_edits == 1.0
    assert r.changed_share == pytest.approx((1 / 11 + 1 / 13 + 1 / 11) / 3)
    assert r.tokens_per_number == {d: float(d) for d in range(1, 7)}
    assert r.number_split == list("123456")


def test_word_tokenizer_unknown_rate_by_hand() -> None:
    tok = train_word(["the cat sat"], 10)  # <UNK>, cat, sat, the
    r = measure(tok, ["the cat sat", "the dog ran"])
    # 6 tokens, "dog" and "ran" unknown: 2/6; only the first line decodes to itself
    assert r.unknown_rate == pytest.approx(2 / 6)
    assert r.lossless == 0.5
    assert r.bytes_per_token == pytest.approx(22 / 6) and r.tokens_per_word == 1.0
    assert r.tokens_per_number == {d: 1.0 for d in range(1, 7)} and r.number_split == ["<UNK>"]


def test_refused_samples() -> None:
    tok = CharTokenizer(list("abc "))  # no unknown token: "d" is refused
    r = measure(tok, ["abc", "abd", "cab"])
    assert r.refused == pytest.approx(1 / 3) and r.lossless == pytest.approx(2 / 3)
    assert r.tokens_per_number is None  # digits are refused


def test_framing_tokens_are_not_counted() -> None:
    tok = WordPieceTokenizer([*BERT_SPECIALS, "cat", "sat"])
    r = measure(tok, ["cat sat", "cat dog"])
    # [CLS] ... [SEP] left out: 2 + 2 tokens, one of them [UNK]
    assert r.tokens_per_sample == 2.0 and r.unknown_rate == pytest.approx(1 / 4)
    assert unknown_id(tok) == 1


class _Flatten(Tokenizer):
    """A toy tokenizer of 2x2 uint8 images: one id per pixel value (tensor in, tensor out)."""

    kind = "toy-image"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten().long()

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.reshape(2, 2).to(torch.uint8)  # (4,) -> (2, 2)

    @property
    def vocab_size(self) -> int:
        return 256

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "_Flatten":
        return cls()


def test_non_text_samples() -> None:
    images = [torch.randint(0, 256, (2, 2), dtype=torch.uint8) for _ in range(5)]
    r = measure(_Flatten(), images, name="toy")
    assert (r.lossless, r.refused, r.tokens_per_sample) == (1.0, 0.0, 4.0)
    assert r.bytes_per_token is None and r.token_edits is None and r.tokens_per_number is None


def test_levenshtein_by_hand() -> None:
    assert levenshtein([1, 2, 3], [1, 2, 3]) == 0
    assert levenshtein(list(b"kitten"), list(b"sitting")) == 3  # k->s, e->i, +g
    assert levenshtein([], [5, 6]) == 2 and levenshtein([7, 1, 2, 9], [7, 9]) == 2


def test_one_character_edit_is_one_edit() -> None:
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 6)))
        edited = one_character_edit(text, "abcd", rng)
        assert levenshtein([ord(c) for c in text], [ord(c) for c in edited]) == 1


def test_corpus_lines() -> None:
    texts = ["a\n\n b\n", "c\n   \nd"]
    assert corpus_lines(texts) == ["a", " b", "c", "d"]
    sample = corpus_lines([f"{i}" for i in range(100)], max_lines=10, seed=3)
    assert sample == corpus_lines([f"{i}" for i in range(100)], max_lines=10, seed=3) and len(sample) == 10
    assert sample == sorted(sample, key=int)  # corpus order kept
    with pytest.raises(DataError):
        corpus_lines(["\n \n"])
    with pytest.raises(DataError):
        measure(train_char(["a"]), [])


def test_table_chart_json(tmp_path) -> None:
    reports = compare({"char": train_char(LINES + ["0123456789"]), "word": train_word(LINES, 5)}, LINES)
    table = report_table(reports)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["tokenizer", "lossless", "refused"] and len(lines) == 4
    assert lines[2].startswith("char") and "100.0%" in lines[2] and "1|2|3|4|5|6" in lines[2]
    report_chart(reports, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_report(reports, tmp_path / "report.json")
    document = read_json(tmp_path / "report.json", fmt=REPORT_FORMAT)
    assert [r["name"] for r in document["reports"]] == ["char", "word"]
    assert document["reports"][0]["bytes_per_token"] == 1.0
