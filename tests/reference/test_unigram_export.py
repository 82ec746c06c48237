"""fmblocks-trained tokenizers written as tokenizer.json: HF `tokenizers` loads them with the same ids.

BPE (train_bpe, "gpt2" and "gpt4" splits), WordPiece (train_wordpiece) and Unigram (train_unigram);
and the Unigram trainer against SentencePiece's on one small corpus (the full comparison is
bench/unigram.py): most of SentencePiece's pieces are ours too, and the segmentations are as short.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.tokenizers.hf_export import save_tokenizer_json
from fmblocks.tokenizers.unigram_train import train_unigram
from fmblocks.tokenizers.wordpiece import train_wordpiece

tokenizers = pytest.importorskip("tokenizers")

TEXTS = ["Hello world! It's 2024.", "  spaces   and\ttabs\n", "naïve café résumé — unicode 😀", "1234567 x+y=z", "",
         "日本語のテキスト ΟΔΟΣ Σίσυφος [CLS] <unk> ▁marked"]
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"]), max_size=60)


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return [line for doc in builtin_corpus(150_000) for line in doc.splitlines() if line.strip()]


@pytest.fixture(scope="module", params=["bpe-gpt2", "bpe-gpt4", "wordpiece", "unigram"])
def exported(request, lines, tmp_path_factory):
    kind = request.param
    if kind.startswith("bpe"):
        ours = train_bpe(lines, 600, pattern=kind[4:], special_tokens=["<|endoftext|>"], progress=False)
    elif kind == "wordpiece":
        ours = train_wordpiece(lines, 800, progress=False)
    else:
        ours = train_unigram(lines[:1500], 600, special_tokens=["<unk>", "<s>"], progress=False)
    path = save_tokenizer_json(ours, tmp_path_factory.mktemp(kind))
    return ours, tokenizers.Tokenizer.from_file(str(path))


def _same(ours, hf, text: str) -> None:
    if hasattr(ours, "encode_with_types"):  # WordPiece: HF always matches "[CLS]" etc. in text
        assert ours.encode(text, allowed_special="all") == hf.encode(text).ids, text
    else:
        assert ours.encode(text, allowed_special="all") == hf.encode(text).ids, text


def test_same_ids_in_hf(exported, lines) -> None:
    ours, hf = exported
    for text in TEXTS + lines[-500:]:
        _same(ours, hf, text)


@given(text=TEXT)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_same_ids_in_hf_on_any_text(exported, text: str) -> None:
    _same(*exported, text)


def test_unigram_near_sentencepiece(lines, tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    train, held = [x for i, x in enumerate(lines) if i % 5], lines[::5]
    (tmp_path / "train.txt").write_text("\n".join(train), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "m"), vocab_size=800, model_type="unigram",
        normalization_rule_name="identity", remove_extra_whitespaces=False, character_coverage=1.0, num_threads=1,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2, hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    ours = train_unigram(train, 800, progress=False)
    theirs = {sp.IdToPiece(i) for i in range(1, sp.GetPieceSize())}
    overlap = len(theirs & {p for p, _ in ours.model.pieces}) / len(theirs)
    our_tokens = sum(len(ours.encode(x)) for x in held)
    their_tokens = sum(len(sp.encode(x)) for x in held)
    # measured: overlap ~0.5-0.6, our segmentations a few percent shorter (bench/unigram.py)
    assert overlap > 0.4 and 0 < our_tokens < 1.1 * their_tokens, (overlap, our_tokens, their_tokens)
