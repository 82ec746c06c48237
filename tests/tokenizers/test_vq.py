"""VQ tokenizer: a short training run on the shipped digits, encode/decode, usage metrics, save/load."""

import math

import pytest
import torch

from fmblocks.data.mnist import load_mnist
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.quantizers.vqvae import VQVAE, VQVAEConfig
from fmblocks.tokenizers import load
from fmblocks.tokenizers.vq import VQTokenizer, evaluate, to_batch, train_vq_tokenizer, usage

SMALL = VQVAEConfig(hidden=32, latent_dim=8, codebook_size=32)


@pytest.fixture(scope="module")
def digits():
    return load_mnist()


@pytest.fixture(scope="module")
def trained(digits) -> VQTokenizer:
    train, _ = digits
    tokenizer, history = train_vq_tokenizer(train.images, SMALL, steps=100, batch_size=32, lr=3e-3, progress=False)
    assert len(history) == 100 and history[-1] < history[0]
    return tokenizer


def test_short_run_reconstructs_and_uses_the_codebook(trained: VQTokenizer, digits) -> None:
    _, test = digits
    metrics = evaluate(trained, test.images)
    # 100 steps of 32 digits: held-out MSE 0.015-0.023 over seeds 0-3 (the mean image scores 0.067), all 32 codes used
    assert metrics["mse"] < 0.03
    assert metrics["used"] > 0.5
    assert metrics["perplexity"] > 0.5 * SMALL.codebook_size


def test_decode_of_encode_is_the_decoded_quantised_latent(trained: VQTokenizer, digits) -> None:
    images = digits[1].images[:4]
    grid = trained.encode(images)
    assert grid.shape == (4, 7, 7) and grid.dtype == torch.long
    with torch.no_grad():
        quantized, indices, _ = trained.model.quantize(to_batch(images, 1)[0])
        expected = trained.model.decoder(quantized).clamp(0, 1)[:, 0]
    assert torch.equal(indices, grid)
    assert torch.equal(trained.decode(grid), expected)
    single = trained.encode(images[0])
    assert torch.equal(single, grid[0]) and trained.decode(single).shape == (28, 28)
    assert torch.equal(trained.encode(images.float() / 255), grid)  # uint8 and [0, 1] floats agree


def test_save_load_round_trip(trained: VQTokenizer, digits, tmp_path) -> None:
    trained.save(tmp_path / "vq.json")
    again = load(tmp_path / "vq.json")
    assert isinstance(again, VQTokenizer) and again.vocab_size == 32
    images = digits[1].images[:8]
    grid = trained.encode(images)
    assert torch.equal(again.encode(images), grid)
    assert torch.equal(again.decode(grid), trained.decode(grid))


def test_usage_hand_worked() -> None:
    figures = usage(torch.tensor([[0, 1], [2, 3]]), 8)  # four codes equally often out of eight
    assert math.isclose(figures["perplexity"], 4.0) and figures["used"] == 0.5
    figures = usage(torch.tensor([5, 5, 5]), 8)
    assert math.isclose(figures["perplexity"], 1.0) and figures["used"] == 0.125


def test_bad_input() -> None:
    tokenizer = VQTokenizer(VQVAE(SMALL))
    with pytest.raises(ShapeError, match="7, 7"):
        tokenizer.decode(torch.zeros(6, 6, dtype=torch.long))
    with pytest.raises(ShapeError, match="28, 28"):
        tokenizer.encode(torch.zeros(2, 27, 27))
    with pytest.raises(ShapeError):
        tokenizer.encode(torch.zeros(28))
    with pytest.raises(ConfigError, match="positive"):
        train_vq_tokenizer(torch.zeros(2, 28, 28), SMALL, steps=0)
