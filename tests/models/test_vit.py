"""ViT: patch tokens in raster order, conv patch-embedding weights, intermediates, bad images, MNIST accuracy."""

import time

import pytest
import torch

from fmblocks.data.mnist import load_mnist
from fmblocks.errors import ShapeError
from fmblocks.models import build_model, preset
from fmblocks.blocks.patch_embed import PatchEmbed
from fmblocks.training import DictDataset, TrainConfig, Trainer

MNIST_ACCURACY = 0.85  # stated target: >= 85 % test accuracy on the shipped digits
MNIST_CPU_SECONDS = 30.0  # within 30 s of single-threaded CPU time (process time: robust to a busy machine)


def test_patch_tokens_hand_worked() -> None:
    model = build_model(preset("vit-tiny", image_size=4, patch_size=2, max_len=5))
    with torch.no_grad():  # patch token = its 4 pixels in dims 0..3, no class token or positions
        model.patch_embed.proj.weight.copy_(torch.eye(64, 4))  # (D, P*P*C)
        model.patch_embed.proj.bias.zero_()
        model.positions.embedding.weight.zero_()
    image = torch.arange(16.0).reshape(1, 1, 4, 4)  # pixel (r, c) = 4 r + c
    tokens = model(image, return_intermediates=True).intermediates["embeddings"][0, 1:, :4]  # (N, 4)
    assert tokens.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]  # row by row


def test_patch_embedding_loads_strided_convolution_weights() -> None:
    model = build_model(preset("vit-tiny", channels=3, image_size=14, max_len=5))
    assert isinstance(model.patch_embed, PatchEmbed)
    conv = torch.nn.Conv2d(3, 64, kernel_size=7, stride=7)  # how pretrained ViTs store the patch embedding
    model.patch_embed.load_state_dict(PatchEmbed.from_conv(conv).state_dict())
    images = torch.randn(2, 3, 14, 14)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, D, 2, 2) -> (B, 4, D)
    torch.testing.assert_close(model.patch_embed(images), expected, rtol=1e-5, atol=1e-5)


def test_outputs_and_intermediates() -> None:
    model = build_model(preset("vit-tiny")).eval()
    out = model(torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]), return_intermediates=True)
    assert out.logits.shape == (3, 10) and out.loss.ndim == 0
    assert [a.shape for a in out.intermediates["attention"]] == [(3, 4, 17, 17)] * 4
    assert out.intermediates["embeddings"].shape == (3, 17, 64)


@pytest.mark.parametrize(
    ("images", "message"),
    [(torch.rand(2, 1, 32, 32), r"images must be \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"),
     (torch.rand(2, 28, 28), r"images must be \(B, 1, 28, 28\), got \(2, 28, 28\)"),
     (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "images must be floating point")],
)
def test_wrong_images_are_refused(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        build_model(preset("vit-tiny"))(images)


def test_vit_learns_mnist_digits() -> None:
    train, test = load_mnist()  # 4000 / 1000 digits, stratified
    model = build_model(preset("vit-tiny", n_layers=2))
    data = DictDataset(images=train.images.float().div(255)[:, None], labels=train.labels)  # (N, 1, 28, 28)
    config = TrainConfig(steps=375, batch_size=64, lr=3e-3, warmup_steps=30, weight_decay=0.01, eval_every=0,
                         log_every=375, device="cpu", progress=False)
    started = time.process_time()
    Trainer(model, data, config=config).fit()
    seconds = time.process_time() - started
    model.eval()
    with torch.no_grad():
        predicted = model(test.images.float().div(255)[:, None]).logits.argmax(-1)
    accuracy = (predicted == test.labels).float().mean().item()
    print(f"ViT on MNIST: {accuracy:.3f} test accuracy after {seconds:.1f} s of CPU time")
    assert accuracy >= MNIST_ACCURACY
    assert seconds <= MNIST_CPU_SECONDS
