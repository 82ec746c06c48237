"""all-MiniLM-L6-v2 in our bert-style encoder equals transformers' BertModel with the same weights.

The reference reads the same local directory (local_files_only, no download); token ids come from
transformers' own tokenizer, so the model check does not depend on our WordPiece. A second check runs
our whole embed() (our WordPiece) against the reference pipeline.
"""

import pytest
import torch
import torch.nn.functional as F

from fmblocks.errors import CheckpointError
from fmblocks.files import write_tensors
from fmblocks.models.pretrained import embed, load_bert, mean_pool, minilm_path

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog!",
    "Transformers are built from attention, feed-forward layers, norms and residual connections.",
    "naïve café résumé — unicode, too",
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> dict:
    path = str(minilm_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.BertModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    pooled = F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    return {"batch": batch, "hidden": hidden, "pooled": pooled}


@pytest.fixture(scope="module")
def ours() -> torch.nn.Module:
    return load_bert(minilm_path())


def test_last_hidden_state_matches_bert_model(ours, reference) -> None:
    batch = reference["batch"]
    assert (batch["attention_mask"] == 0).any()  # the batch includes padding
    with torch.no_grad():
        hidden = ours.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(hidden[real], reference["hidden"][real], atol=1e-5, rtol=1e-5)


def test_mean_pooled_embeddings_match(ours, reference) -> None:
    batch = reference["batch"]
    ids = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    torch.testing.assert_close(embed(ids), reference["pooled"], atol=1e-5, rtol=1e-5)


def test_embed_with_our_tokenizer_matches_the_reference_pipeline(reference) -> None:
    got = embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(SENTENCES)))
    torch.testing.assert_close(got, reference["pooled"], atol=1e-5, rtol=1e-5)


def test_similar_sentences_are_closer() -> None:
    a, b, c = embed(["A man is eating food.", "A man eats a meal.", "The stock market fell sharply."])
    assert a @ b > a @ c + 0.3


def test_checkpoint_of_another_shape_is_refused(tmp_path) -> None:
    source = minilm_path()
    (tmp_path / "config.json").write_text((source / "config.json").read_text())
    write_tensors(tmp_path / "model.safetensors", {"embeddings.word_embeddings.weight": torch.zeros(10, 384)})
    with pytest.raises(CheckpointError, match=r"embeddings.word_embeddings.weight: shape \(10, 384\)"):
        load_bert(tmp_path)


def test_embed_command_prints_and_writes(tmp_path, capsys) -> None:
    from fmblocks.cli import main
    from fmblocks.files import read_tensors

    assert main(["embed", "A man is eating food.", "ok"]) == 0
    rows = [list(map(float, line.split())) for line in capsys.readouterr().out.splitlines()]
    expected = embed(["A man is eating food.", "ok"])
    torch.testing.assert_close(torch.tensor(rows), expected, atol=1e-6, rtol=0)
    assert main(["embed", "A man is eating food.", "ok", "--out", str(tmp_path / "e.safetensors")]) == 0
    torch.testing.assert_close(read_tensors(tmp_path / "e.safetensors")["embeddings"], expected)
