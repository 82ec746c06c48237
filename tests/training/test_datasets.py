"""Datasets: causal windows (hand-worked), BERT masking statistics, padding, the seeded example stream."""

import pytest
import torch

from fmblocks.errors import DataError
from fmblocks.training.datasets import (
    CausalLMWindows,
    DictDataset,
    ExampleStream,
    MaskedLMDataset,
    collate,
    mask_tokens,
)

PAD, MASK, CLS = 0, 1, 2


def test_causal_windows_hand_worked() -> None:
    data = CausalLMWindows(torch.arange(10), 4)
    assert len(data) == 2  # (10 - 1 - 4) // 4 + 1
    assert data[1]["input_ids"].tolist() == [4, 5, 6, 7]
    assert data[1]["targets"].tolist() == [5, 6, 7, 8]
    overlapping = CausalLMWindows(list(range(10)), 4, stride=1)
    assert len(overlapping) == 6
    assert overlapping[5]["targets"].tolist() == [6, 7, 8, 9]
    with pytest.raises(IndexError):
        overlapping[6]


def test_too_short_or_empty_stream_is_a_data_error() -> None:
    with pytest.raises(DataError, match="4 tokens; a window of context 4 needs 5"):
        CausalLMWindows(torch.arange(4), 4)
    with pytest.raises(DataError, match="0 tokens"):
        CausalLMWindows([], 4)


def masked_dataset(**overrides: object) -> MaskedLMDataset:
    generator = torch.Generator().manual_seed(0)
    sequences = [[CLS, *torch.randint(3, 30, (99,), generator=generator).tolist()] for _ in range(400)]
    settings = {"vocab_size": 30, "mask_id": MASK, "pad_id": PAD, "special_ids": [CLS], "seed": 3, **overrides}
    return MaskedLMDataset(sequences, **settings)


def test_masking_statistics_15_percent_then_80_10_10() -> None:
    data = masked_dataset()
    original = torch.stack(data.sequences)  # (400, 100)
    batch = collate([data[i] for i in range(len(data))])
    inputs, labels = batch["input_ids"], batch["labels"]
    selected = labels != -100
    assert (labels[selected] == original[selected]).all()
    assert (inputs[~selected] == original[~selected]).all()
    assert not selected[:, 0].any()  # the special CLS is never a target
    candidates = original[:, 1:].numel()
    assert selected.sum() / candidates == pytest.approx(0.15, abs=0.01)  # std 0.0018
    chosen, before = inputs[selected], original[selected]
    masked = chosen == MASK
    unchanged = chosen == before
    replaced = ~masked & ~unchanged
    # a random replacement draws one of the 27 non-special ids, so it equals the original 1/27 of the time
    assert masked.float().mean() == pytest.approx(0.8, abs=0.02)
    assert replaced.float().mean() == pytest.approx(0.1 * 26 / 27, abs=0.015)
    assert unchanged.float().mean() == pytest.approx(0.1 + 0.1 / 27, abs=0.015)
    assert (chosen[replaced] >= 3).all()  # replacements are never special tokens


def test_masks_are_seeded_per_example_and_change_with_the_epoch() -> None:
    first, again = masked_dataset(), masked_dataset()
    assert torch.equal(first[7]["input_ids"], again[7]["input_ids"])
    again.set_epoch(1)
    assert not torch.equal(first[7]["input_ids"], again[7]["input_ids"])
    assert not torch.equal(first[7]["labels"], masked_dataset(seed=4)[7]["labels"])


def test_every_sequence_gets_at_least_one_target() -> None:
    ids = torch.tensor([CLS, 5, 6])
    special = torch.tensor([True, False, False])
    for seed in range(20):
        _, labels = mask_tokens(ids, mask_id=MASK, random_ids=torch.arange(3, 30), special=special,
                                generator=torch.Generator().manual_seed(seed), mask_prob=0.0)
        assert (labels != -100).sum() == 1 and labels[0] == -100


def test_masked_batches_are_right_padded() -> None:
    data = MaskedLMDataset([[5, 6, 7], [8]], vocab_size=10, mask_id=MASK, pad_id=PAD)
    batch = data.collate([data[0], data[1]])
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"][1, 1:].tolist() == [PAD, PAD]
    assert batch["labels"][1, 1:].tolist() == [-100, -100]


def test_masked_dataset_errors_and_truncation() -> None:
    with pytest.raises(DataError, match="empty"):
        MaskedLMDataset([[], []], vocab_size=10, mask_id=MASK, pad_id=PAD)
    with pytest.raises(DataError, match="sequence 1 has 5 tokens, longer than the context of 4"):
        MaskedLMDataset([[5], [5] * 5], vocab_size=10, mask_id=MASK, pad_id=PAD, max_len=4)
    cut = MaskedLMDataset([[5], [5] * 5], vocab_size=10, mask_id=MASK, pad_id=PAD, max_len=4, truncate=True)
    assert cut.max_length == 4
    with pytest.raises(DataError, match=r"token id 12 is outside 0..9"):
        MaskedLMDataset([[5, 12]], vocab_size=10, mask_id=MASK, pad_id=PAD)


def test_example_stream_is_a_seeded_permutation_per_epoch() -> None:
    stream = ExampleStream(7, seed=1)
    epochs = [[stream.at(p) for p in range(e * 7, (e + 1) * 7)] for e in range(3)]
    for e, positions in enumerate(epochs):
        assert {epoch for epoch, _ in positions} == {e}
        assert sorted(index for _, index in positions) == list(range(7))
    assert epochs[0] != epochs[1]
    assert [ExampleStream(7, seed=1).at(p) for p in range(9, 12)] == [stream.at(p) for p in range(9, 12)]
    with pytest.raises(DataError, match="empty"):
        ExampleStream(0, seed=1)


def test_dict_dataset_rows_and_errors() -> None:
    data = DictDataset(images=torch.zeros(3, 2, 2), labels=torch.tensor([4, 5, 6]))
    assert len(data) == 3 and data[2]["labels"] == 6
    with pytest.raises(DataError, match="same number of rows"):
        DictDataset(images=torch.zeros(3, 2), labels=torch.zeros(2))
    with pytest.raises(DataError, match="empty"):
        DictDataset(labels=torch.zeros(0))
