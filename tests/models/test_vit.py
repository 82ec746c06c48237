"""ViT: the patch embedding is a stride-P convolution, intermediates, bad images, and MNIST accuracy."""

import time

import pytest
import torch

from fmblocks.data.mnist import load_mnist
from fmblocks.errors import ShapeError
from fmblocks.models import build_model, preset
from fmblocks.models.vit import image_patches
from fmblocks.training import DictDataset, TrainConfig, Trainer

MNIST_ACCURACY = 0.85  # stated target: >= 85 % test accuracy on the shipped digits
MNIST_CPU_SECONDS = 30.0  # within 30 s of single-threaded CPU time (process time: robust to a busy machine)


def test_patches_hand_worked() -> None:
    image = torch.arange(16.0).reshape(1, 1, 4, 4)  # pixel (r, c) = 4 r + c
    patches = image_patches(image, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5]  # top-left patch, row by row
    assert patches[0, 1].tolist() == [2, 3, 6, 7]  # top-right
    assert patches[0, 3].tolist() == [10, 11, 14, 15]  # bottom-right


def test_patch_embedding_equals_a_strided_convolution() -> None:
    model = build_model(preset("vit-tiny", channels=3, image_size=14, max_len=5))
    images = torch.randn(2, 3, 14, 14)
    conv = torch.nn.Conv2d(3, 64, kernel_size=7, stride=7)
    with torch.no_grad():
        conv.weight.copy_(model.patch_embed.weight.reshape(64, 3, 7, 7))  # (D, C*P*P) -> (D, C, P, P)
        conv.bias.copy_(model.patch_embed.bias)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, D, 2, 2) -> (B, 4, D)
    torch.testing.assert_close(model.patch_embed(image_patches(images, 7)), expected)


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
