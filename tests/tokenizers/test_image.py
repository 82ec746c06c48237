"""Image tokenizers: patchify/unpatchify, PatchEmbed vs Conv2d, binary 2x2 patches."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fmblocks.errors import ShapeError, TokenizerError
from fmblocks.tokenizers import load
from fmblocks.blocks.patch_embed import PatchEmbed
from fmblocks.tokenizers.image import BinaryPatchTokenizer, PatchTokenizer, binarize, patchify, unpatchify


def test_patchify_hand_worked_channels_last() -> None:
    image = torch.arange(16).reshape(4, 4, 1)  # (H, W, C): pixel value = 4 * row + col
    patches = patchify(image, 2, channels_last=True)
    assert patches.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_patchify_channel_is_fastest() -> None:
    image = torch.arange(2 * 2 * 3).reshape(2, 2, 3)  # (H, W, C)
    assert patchify(image, 2, channels_last=True).tolist() == [list(range(12))]


@pytest.mark.parametrize(("shape", "p"), [((3, 8, 8), 4), ((2, 1, 28, 28), 7), ((5, 3, 6, 10), 2), ((1, 2, 4, 4), 1), ((2, 3, 9, 9), 9)])
def test_unpatchify_is_the_exact_inverse(shape: tuple[int, ...], p: int) -> None:
    images = torch.randn(shape)
    patches = patchify(images, p)
    h, w = shape[-2:]
    assert patches.shape[-2:] == ((h // p) * (w // p), p * p * shape[-3])
    assert torch.equal(unpatchify(patches, (h, w), p), images)
    last = images.movedim(-3, -1)  # channels-last copy gives the same patches
    assert torch.equal(patchify(last, p, channels_last=True), patches)
    assert torch.equal(unpatchify(patches, (h, w), p, channels_last=True), last)


def test_patchify_matches_torch_unfold() -> None:
    images = torch.randn(2, 3, 12, 8)
    p = 4
    unfolded = F.unfold(images, kernel_size=p, stride=p)  # (B, C·P·P, N), channel slowest
    reference = unfolded.reshape(2, 3, p, p, -1).permute(0, 4, 2, 3, 1).reshape(2, -1, p * p * 3)  # -> (B, N, P·P·C)
    assert torch.equal(patchify(images, p), reference)


def test_patch_embed_equals_strided_conv() -> None:
    conv = nn.Conv2d(3, 16, kernel_size=4, stride=4)
    images = torch.randn(2, 3, 12, 16)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) -> (B, N, D)
    embed = PatchEmbed.from_conv(conv)
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)
    back = embed.to_conv()
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)


def test_not_divisible_names_the_sizes() -> None:
    with pytest.raises(ShapeError, match="30x28.*patch size 4"):
        patchify(torch.zeros(1, 30, 28), 4)
    with pytest.raises(ShapeError, match="not divisible"):
        BinaryPatchTokenizer(image_size=27)
    with pytest.raises(ShapeError):
        PatchTokenizer(4, (28, 30))


def test_patch_tokenizer_round_trip_and_save(tmp_path) -> None:
    tok = PatchTokenizer(7, 28, channels=1)
    images = torch.rand(3, 1, 28, 28)
    patches = tok.encode(images)
    assert patches.shape == (3, 16, 49)
    assert torch.equal(tok.decode(patches), images)
    tok.save(tmp_path / "patch.json")
    assert torch.equal(load(tmp_path / "patch.json").decode(patches), images)


def test_binary_hand_worked_4x4() -> None:
    image = torch.tensor(
        [[255, 0, 0, 0],
         [0, 0, 0, 200],
         [128, 127, 9, 9],
         [128, 128, 255, 255]],
        dtype=torch.uint8,
    )
    tok = BinaryPatchTokenizer(image_size=4)
    # blocks in raster order: [[1,0],[0,0]] = 8, [[0,0],[0,1]] = 1, [[1,0],[1,1]] = 11, [[0,0],[1,1]] = 3
    assert tok.encode(image).tolist() == [8, 1, 11, 3]
    assert torch.equal(tok.decode([8, 1, 11, 3]), (image >= 128).to(torch.uint8))


def test_binary_sixteen_symbols_in_order() -> None:
    tok = BinaryPatchTokenizer(image_size=2)
    assert tok.vocab_size == 16
    for symbol in range(16):
        block = tok.decode([symbol])
        a, b, c, d = block.flatten().tolist()
        assert 8 * a + 4 * b + 2 * c + d == symbol
        assert tok.encode(block.bool()).tolist() == [symbol]


def test_binary_lossless_on_mnist_binarised() -> None:
    from fmblocks.data.mnist import load_mnist

    digits = load_mnist()[1].images
    tok = BinaryPatchTokenizer()
    ids = tok.encode(digits)
    assert ids.shape == (len(digits), 196) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    binary = binarize(digits).to(torch.uint8)
    assert torch.equal(tok.decode(ids), binary)
    assert torch.equal(tok.encode(binary), ids)  # a binary image survives exactly
    assert torch.equal(tok.encode(binary * 255), ids)
    assert torch.equal(tok.encode(digits.float() / 255), tok.encode(digits.float() / 255 >= 0.5))


def test_binary_threshold_and_single_image() -> None:
    image = torch.full((28, 28), 100, dtype=torch.uint8)
    assert BinaryPatchTokenizer().encode(image).tolist() == [0] * 196
    assert BinaryPatchTokenizer(threshold=100).encode(image).tolist() == [15] * 196
    assert BinaryPatchTokenizer().decode(torch.zeros(196, dtype=torch.long)).shape == (28, 28)
    ones = torch.ones(28, 28, dtype=torch.uint8)  # integer images in {0, 1} are already binary
    assert BinaryPatchTokenizer().encode(ones).tolist() == [15] * 196
    assert BinaryPatchTokenizer(threshold=128).encode(ones).tolist() == [0] * 196


def test_binary_bad_input_and_save(tmp_path) -> None:
    tok = BinaryPatchTokenizer(image_size=(4, 6), threshold=3)
    with pytest.raises(ShapeError, match=r"\(4, 6\)"):
        tok.encode(torch.zeros(4, 4))
    with pytest.raises(ShapeError, match="6 tokens"):
        tok.decode([0, 1])
    with pytest.raises(TokenizerError, match="0..15"):
        tok.decode([0, 1, 2, 3, 4, 16])
    tok.save(tmp_path / "bin.json")
    again = load(tmp_path / "bin.json")
    image = torch.randint(0, 6, (4, 6))
    assert torch.equal(again.encode(image), tok.encode(image))


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_binary_round_trip_property(rows: int, cols: int, p: int, seed: int) -> None:
    images = torch.rand(2, rows * p, cols * p, generator=torch.Generator().manual_seed(seed)) < 0.5
    tok = BinaryPatchTokenizer(image_size=(rows * p, cols * p), patch_size=p)
    ids = tok.encode(images)
    assert ids.shape == (2, rows * cols) and int(ids.max()) < 2 ** (p * p)
    assert torch.equal(tok.decode(ids).bool(), images)
    assert torch.equal(tok.encode(tok.decode(ids)), ids)
