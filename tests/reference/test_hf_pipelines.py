"""tokenizer.json in and out, against HF `tokenizers`: each kind trained here by an HF trainer on the same
small corpus, saved as tokenizer.json, loaded by fmblocks; the ids (and decoded text) must be HF's.

    byte-level BPE   GPT-2's ByteLevel split, Llama-3's and Qwen2's Split regexes (+ NFC, BOS template,
                     ignore_merges), special tokens first as HF's BpeTrainer puts them
    SentencePiece-style BPE with byte fallback   Llama-2's Prepend + Replace "▁" normaliser and Mistral's
                     Metaspace(prepend_scheme="first"), <0xNN> byte tokens, "<s> $A" template
    WordPiece        WordPieceTrainer with BERT's normaliser, pre-tokeniser and framing
    Unigram          UnigramTrainer with Metaspace, T5's "$A </s>" template; and T5's own layout, a
                     sentencepiece Unigram model with nmt_nfkc rules (the `Precompiled` normaliser) made
                     into a tokenizer.json by transformers' T5Tokenizer, also against sentencepiece

And back: the fmblocks tokenizer written by `save_tokenizer_json` loads in HF with the same ids.
"""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus
from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.hf_export import save_tokenizer_json
from fmblocks.tokenizers.pipeline import PipelineTokenizer

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")
TEXTS = [
    "Hello world! It's 2024.", "  spaces   and\ttabs\n", "naïve café résumé — unicode 😀", "1234567 x+y=z",
    "Héllo Wörld! Ça va? naïve façade, Ångström, Øresund, Dvořák, İstanbul",
    "ΟΔΟΣ Σίσυφος ΣΣ, Москва, עִברִית, العربية, हिन्दी, ภาษาไทย",
    "日本語のテキスト、中文字符和한국어. 𠀀𪚥 ﬁ ﬂ ㎏ ½ ①", "emoji 🙂👍🏽👨‍👩‍👧 $100 + 5% = €3 <tag> ~tilde",
    "tabs\tnewlines\nreturns\r\x00null\x7fdel\u200bzw\u00a0nbsp\u2028ls\u3000ideo\x85nel",
    "dotted...dashes---quotes\"'«»„“” don't WON'T I'M ▁already▁marked", "", " ", "   ", "\n\n", " leading",
    "x" * 120 + " " + "supercalifragilisticexpialidocious " * 3,
]
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"]), max_size=60)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return builtin_corpus(300_000)


@pytest.fixture(scope="module")
def lines(corpus) -> list[str]:
    return [line for doc in builtin_corpus(60_000) for line in doc.splitlines()][:1500]


def _train(tok, corpus, trainer):
    tok.train_from_iterator(corpus, trainer)
    return tok


def _byte_level_bpe(corpus, split: str | None, specials: list[str]):
    tok = tokenizers.Tokenizer(models.BPE())
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return _train(tok, corpus, trainers.BpeTrainer(vocab_size=1200, special_tokens=specials, show_progress=False,
                                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))


def _edited(tok, **changes):
    """`tok` with top-level (or model) fields of its tokenizer.json replaced."""
    document = json.loads(tok.to_str())
    for key, value in changes.items():
        if key.startswith("model_"):
            document["model"][key[len("model_"):]] = value
        else:
            document[key] = value
    return tokenizers.Tokenizer.from_str(json.dumps(document))


def _sentencepiece_bpe(corpus, style: str):
    """A Llama-2 (style "llama2") or Mistral ("mistral") layout: <unk> <s> </s>, 256 byte tokens, then pieces."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    _train(tok, corpus, trainers.BpeTrainer(vocab_size=900, show_progress=False, limit_alphabet=150))
    trained = json.loads(tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for token in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(token, len(vocab))
    bpe = models.BPE(vocab, [tuple(m) for m in trained["merges"]], unk_token="<unk>", byte_fallback=True,
                     fuse_unk=True)
    out = tokenizers.Tokenizer(bpe)
    if style == "llama2":
        out.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        out.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        out.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        out.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False),
                                         decoders.ByteFallback(), decoders.Fuse()])
    out.add_special_tokens([tokenizers.AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    out.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return out


def build(kind: str, corpus):
    if kind == "gpt2-trained":
        return _byte_level_bpe(corpus, None, ["<|endoftext|>"])
    if kind == "llama3":
        tok = _byte_level_bpe(corpus, LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>"])
        tok = _edited(tok, model_ignore_merges=True)
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", 0)])])
        return tok
    if kind == "qwen2":
        tok = _byte_level_bpe(corpus, QWEN2, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.normalizer = normalizers.NFC()
        return tok
    if kind in ("llama2", "mistral"):
        return _sentencepiece_bpe(corpus, kind)
    if kind == "wordpiece":
        tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        _train(tok, corpus, trainers.WordPieceTrainer(vocab_size=1500, show_progress=False,
                                                      special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
        tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                       ("[CLS]", tok.token_to_id("[CLS]")))
        return tok
    if kind == "unigram":
        tok = tokenizers.Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        _train(tok, corpus, trainers.UnigramTrainer(vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"],
                                                    unk_token="<unk>", show_progress=False))
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
        return tok
    raise ValueError(kind)


KINDS = ["gpt2-trained", "llama3", "qwen2", "llama2", "mistral", "wordpiece", "unigram"]


@pytest.fixture(scope="module", params=KINDS)
def pair(request, corpus, tmp_path_factory):
    """(kind, HF's tokenizer, ours), both read from the same tokenizer.json. The file, not HF's trained object,
    is the reference: HF's JSON reader can read a score one unit in the last place away from the trained value,
    and a Unigram tie then splits a run of "=" differently before and after saving."""
    folder = tmp_path_factory.mktemp(request.param)
    build(request.param, corpus).save(str(folder / "tokenizer.json"))
    return request.param, tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")), load(folder)


def _check(hf, ours, text: str) -> None:
    expected = hf.encode(text).ids
    assert ours.encode(text, allowed_special="all") == expected, text
    if hasattr(ours, "model"):  # pipelines decode as HF does, special tokens kept or skipped
        assert ours.decode(expected) == hf.decode(expected, skip_special_tokens=False), text
        assert ours.decode(expected, skip_special_tokens=True) == hf.decode(expected), text
    elif not hasattr(ours, "vocab"):  # byte-level BPE kinds decode the raw bytes
        assert ours.decode(expected) == hf.decode(expected, skip_special_tokens=False), text


def test_same_ids_on_parity_texts(pair, lines) -> None:
    kind, hf, ours = pair
    expected_kind = {"wordpiece": "wordpiece"}.get(kind, "pipeline")
    assert ours.kind == expected_kind
    for text in TEXTS + lines:
        _check(hf, ours, text)
    specials = [t.content for t in hf.get_added_tokens_decoder().values()]
    for special in specials:
        _check(hf, ours, f"a{special}b {special} c")
        if kind != "wordpiece":
            with pytest.raises(TokenizerError, match="special token"):
                ours.encode(f"x{special}")


def test_pair_encoding(pair) -> None:
    kind, hf, ours = pair
    if kind == "wordpiece":
        assert ours.encode("Is it raining?", "No.") == hf.encode("Is it raining?", "No.").ids
    else:
        assert ours.encode("Is it raining?", "No.") == hf.encode("Is it raining?", "No.").ids


@given(text=TEXT)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_same_ids_on_any_text(pair, text: str) -> None:
    _, hf, ours = pair
    _check(hf, ours, text)


def test_export_loads_in_hf_with_same_ids(pair, lines, tmp_path: Path) -> None:
    kind, hf, ours = pair
    path = save_tokenizer_json(ours, tmp_path)
    again = tokenizers.Tokenizer.from_file(str(path))
    for text in TEXTS + lines[:300]:
        assert again.encode(text).ids == hf.encode(text).ids, text
    if isinstance(ours, PipelineTokenizer):  # and round trips through fmblocks' own file
        ours.save(tmp_path / "ours.json")
        assert load(tmp_path / "ours.json").encode(TEXTS[2]) == ours.encode(TEXTS[2])


# -- T5: sentencepiece's Precompiled normaliser ------------------------------------------------------
NFKC_TEXTS = ["Ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ １２３", "ﬁne ﬂow ﬀ ﬃ", "① ② ⑩ ½ ¾ ² ₃ ㎏ ㎡ Ⅻ",
              "a\u00a0b\u2002c\u3000d", "e\u0301 A\u030a ᄀ\u1161 ｶﾞ ＂quoted＂", "™ ℃ … ‥ ﹏ ︵",
              "  double  spaces  and trailing  "]


def _field(message: bytes, number: int) -> bytes:
    """The bytes of length-delimited field `number` in a protobuf `message` (sentencepiece's .model file)."""
    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = message[i]
            value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
            if byte < 0x80:
                return value, i
    i = 0
    while i < len(message):
        key, i = varint(i)
        wire = key & 7
        if wire == 0:
            _, i = varint(i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            size, i = varint(i)
            if key >> 3 == number:
                return message[i:i + size]
            i += size
    raise KeyError(number)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    """(sentencepiece processor, HF tokenizer, ours), HF and ours reading the same tokenizer.json."""
    spm = pytest.importorskip("sentencepiece")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("t5")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(builtin_corpus(200_000)) + "\n" + "\n".join(NFKC_TEXTS * 3), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=800,
                                   model_type="unigram", normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, minloglevel=2)
    model = (folder / "spiece.model").read_bytes()
    charsmap = _field(_field(model, 3), 2)  # ModelProto.normalizer_spec.precompiled_charsmap
    processor = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    hf = transformers.T5Tokenizer(vocab=pieces, _spm_precompiled_charsmap=charsmap, extra_ids=0)
    hf.backend_tokenizer.save(str(folder / "tokenizer.json"))
    document = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert document["normalizer"]["type"] == "Precompiled"
    return processor, tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")), load(folder)


def test_same_ids_as_hf_on_parity_and_nfkc_texts(t5) -> None:
    _, hf, ours = t5
    assert ours.kind == "pipeline"
    for text in TEXTS + NFKC_TEXTS:
        assert ours.encode(text) == hf.encode(text).ids, text
        assert ours.decode(hf.encode(text).ids) == hf.decode(hf.encode(text).ids, skip_special_tokens=False), text


@given(text=TEXT)
@settings(max_examples=200, deadline=None)
def test_same_ids_as_hf_on_any_text(t5, text: str) -> None:
    _, hf, ours = t5
    assert ours.encode(text) == hf.encode(text).ids


def test_same_ids_as_sentencepiece_where_the_pipelines_agree(t5) -> None:
    """HF's T5 pipeline is not sentencepiece (it splits on whitespace before the Unigram model), so they
    can differ; wherever HF equals sentencepiece, fmblocks must too, and on the NFKC texts they all agree."""
    processor, hf, ours = t5
    agreed = 0
    for text in TEXTS + NFKC_TEXTS:
        reference = processor.encode(text) + [processor.eos_id()]
        if hf.encode(text).ids == reference:
            agreed += 1
            assert ours.encode(text) == reference, text
    assert agreed >= len(NFKC_TEXTS)
    for text in NFKC_TEXTS[:-1]:
        assert ours.encode(text) == processor.encode(text) + [processor.eos_id()], text
