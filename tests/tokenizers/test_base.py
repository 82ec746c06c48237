"""check_ids / check_id_tensor: every tokenizer's decode refuses ids that are not integers in its vocabulary."""

import re

import numpy as np
import pytest
import torch

from fmblocks.errors import TokenizerError
from fmblocks.quantizers.vqvae import VQVAE, VQVAEConfig
from fmblocks.tokenizers.base import check_id_tensor, check_ids
from fmblocks.tokenizers.bio import KmerTokenizer, ProteinTokenizer, RankValueTokenizer
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.image import BinaryPatchTokenizer
from fmblocks.tokenizers.simple import CharTokenizer, WordTokenizer
from fmblocks.tokenizers.vq import VQTokenizer
from fmblocks.tokenizers.wordpiece import WordPieceTokenizer

LIST_TOKENIZERS = {  # decode(list of ids)
    "char": lambda: CharTokenizer(list("abc")),
    "word": lambda: WordTokenizer(["<UNK>", "a", "b"]),
    "wordpiece": lambda: WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b"]),
    "bpe": lambda: BPETokenizer([bytes([b]) for b in range(256)], special_tokens={"<|x|>": 256}),
    "protein": ProteinTokenizer,
    "kmer": lambda: KmerTokenizer(2),
    "rank-value": lambda: RankValueTokenizer(["g1", "g2"], [1.0, 2.0]),
}
NOT_INTEGERS = [1.7, 1.0, float("nan"), "5", True, False, None, [1], np.float64(2.0), np.bool_(True), torch.tensor(1.5)]


def test_check_ids_hand_worked() -> None:
    assert check_ids([3, 0], 5) == [3, 0]
    assert check_ids([np.int64(3), torch.tensor(4)], 5) == [3, 4]  # integer scalars become ints
    assert check_ids(torch.tensor([1, 2]), 5) == check_ids(np.array([1, 2]), 5) == [1, 2]
    assert check_ids([], 5) == [] and check_ids(range(3), 3) == [0, 1, 2]
    with pytest.raises(TokenizerError, match=r"token id 5 at position 1 is outside the vocabulary \(0..4\)"):
        check_ids([0, 5], 5)
    with pytest.raises(TokenizerError, match="sequence of token ids, got int"):
        check_ids(7, 5)
    with pytest.raises(TokenizerError, match="1.5 at position 0 is not an integer"):
        check_ids(torch.tensor([1.5]), 5)


@pytest.mark.parametrize("name", LIST_TOKENIZERS)
@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_decode_refuses_a_non_integer_id(name: str, bad) -> None:
    tok = LIST_TOKENIZERS[name]()
    with pytest.raises(TokenizerError, match=f"token id {re.escape(repr(bad))} at position 1 is not an integer"):
        tok.decode([tok.vocab_size - 1, bad])


@pytest.mark.parametrize("name", LIST_TOKENIZERS)
def test_decode_refuses_ids_out_of_range_and_takes_integer_scalars(name: str) -> None:
    tok = LIST_TOKENIZERS[name]()
    last = tok.vocab_size - 1
    for bad in (tok.vocab_size, -1, 10**30):
        with pytest.raises(TokenizerError, match=f"token id {bad} at position 1 is outside the vocabulary"):
            tok.decode([last, bad])
    assert tok.decode(torch.tensor([last])) == tok.decode([np.int64(last)]) == tok.decode([last])


def test_bpe_decode_refuses_an_unused_id() -> None:
    tok = BPETokenizer([bytes([b]) for b in range(256)], special_tokens={"<|x|>": 258})
    with pytest.raises(TokenizerError, match="token id 257 at position 1 is unused"):
        tok.decode([0, 257])
    assert tok.decode([ord("a"), 258]) == "a<|x|>"


def test_check_id_tensor() -> None:
    assert torch.equal(check_id_tensor([[1, 2]], 3), torch.tensor([[1, 2]]))
    for bad in ([1.7], [True], [float("nan")], torch.tensor([1.0])):
        with pytest.raises(TokenizerError, match="must be integers"):
            check_id_tensor(bad, 3)
    with pytest.raises(TokenizerError, match="could not read"):
        check_id_tensor(["5"], 3)
    with pytest.raises(TokenizerError, match=r"token id -1 is outside the vocabulary \(0..2\)"):
        check_id_tensor(torch.tensor([[0, -1], [3, 1]]), 3)


@pytest.mark.parametrize("make", [
    lambda: BinaryPatchTokenizer(image_size=(2, 2), patch_size=2),  # 1 token per image, 16 ids
    lambda: VQTokenizer(VQVAE(VQVAEConfig(image_size=4, hidden=4, latent_dim=2, codebook_size=8, downsample=1))),
], ids=["binary-patch", "vq"])
def test_image_decode_refuses_bad_ids(make) -> None:
    tok = make()
    shape = (1,) if isinstance(tok, BinaryPatchTokenizer) else (2, 2)
    for bad in (1.7, True, float("nan")):
        with pytest.raises(TokenizerError, match="must be integers"):
            tok.decode(torch.full(shape, bad))
    with pytest.raises(TokenizerError, match=f"token id {tok.vocab_size} is outside the vocabulary"):
        tok.decode(torch.full(shape, tok.vocab_size))
    tok.decode(torch.full(shape, tok.vocab_size - 1))
