"""train_bpe learns the same merges as HF tokenizers' BpeTrainer on the same corpus and settings.

HF is configured to split exactly as we do: a `Split` pre-tokenizer with our regex, then
`ByteLevel(use_regex=False)` for the byte -> printable-character map, the full 256-byte initial
alphabet, the same vocab_size, min_frequency and special tokens. One adjustment: HF's regex engine
(Oniguruma, Ruby syntax) reads `{1,3}+` as "one or more runs of 1-3 digits", not as a possessive
`{1,3}`; the `+` is moot at the end of its alternative, so `{1,3}` gives tiktoken's GPT-4 split there.
"""

import json

import pytest
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from fmblocks.data.text import builtin_corpus
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS, char_to_byte


def hf_merges(texts: list[str], pattern: str, vocab_size: int, specials: list[str]) -> list[tuple[bytes, bytes]]:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERNS[pattern].replace("{1,3}+", "{1,3}")), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [(bytes(char_to_byte[c] for c in a), bytes(char_to_byte[c] for c in b)) for a, b in merges]


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_same_merges_as_hf_trainer(pattern: str) -> None:
    texts = builtin_corpus(1_000_000)  # pydoc topics and stdlib sources: prose, code, some non-ASCII
    specials = ["<|endoftext|>"]
    ours = train_bpe(texts, 3000, pattern=pattern, special_tokens=specials, min_frequency=2, progress=False)
    expected = hf_merges(texts, pattern, 3000, specials)
    assert len(expected) == 3000 - 256 - 1
    assert ours.merges == expected
    assert ours.vocab_size == 3000 and ours.special_tokens == {"<|endoftext|>": 2999}


def test_min_frequency_stops_like_hf() -> None:
    texts = builtin_corpus(60_000)  # too small for 60,000 ids: training ends when the best pair is seen once
    ours = train_bpe(texts, 60_000, pattern="gpt4", min_frequency=2, progress=False)
    expected = hf_merges(texts, "gpt4", 60_000, [])
    assert ours.merges == expected and len(expected) < 60_000 - 256
