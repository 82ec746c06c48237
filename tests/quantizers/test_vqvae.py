"""VQ-VAE: nearest-neighbour quantisation, straight-through gradients, losses, EMA, restarts, k-means."""

import pytest
import torch
import torch.nn.functional as F

from fmblocks.errors import ConfigError, ShapeError
from fmblocks.quantizers.vqvae import VQVAE, VQVAEConfig, VectorQuantizer, kmeans


def test_nearest_equals_brute_force_cdist() -> None:
    vq = VectorQuantizer(32, 8)
    z = torch.randn(4, 5, 8)
    _, indices, _ = vq(z)
    reference = torch.cdist(z.reshape(-1, 8), vq.codebook.detach()).argmin(dim=1).reshape(4, 5)
    assert torch.equal(indices, reference)


def test_hand_worked_quantisation_and_loss() -> None:
    vq = VectorQuantizer(2, 2, beta=0.5)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([[0.2, 0.1], [0.9, 0.6]])
    quantized, indices, loss = vq.eval()(z)
    assert indices.tolist() == [0, 1]
    assert quantized.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    squared = (0.2**2 + 0.1**2 + 0.1**2 + 0.4**2) / 4  # mean ||z - q||² per element
    torch.testing.assert_close(loss, torch.tensor((1 + 0.5) * squared))


def test_decode_reproduces_quantized_exactly() -> None:
    model = VQVAE(VQVAEConfig(hidden=8, latent_dim=4, codebook_size=16, kmeans_init=False)).eval()
    images = torch.rand(3, 1, 28, 28)
    quantized, indices, _ = model.quantize(images)
    assert indices.shape == (3, 7, 7)
    assert torch.equal(model.quantizer.decode(indices).permute(0, 3, 1, 2), quantized)
    assert torch.equal(model.decode(indices), model(images)[0])


@pytest.mark.parametrize("ema", [False, True])
def test_straight_through_gradient_reaches_the_encoder(ema: bool) -> None:
    model = VQVAE(VQVAEConfig(hidden=8, latent_dim=4, codebook_size=16, ema=ema, kmeans_init=False))
    images = torch.rand(2, 1, 28, 28)
    reconstruction, _, _ = model(images)
    F.mse_loss(reconstruction, images).backward()  # the reconstruction term alone
    first = model.encoder[0].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # the decoder's gradient skips the codebook


def test_straight_through_gradient_is_the_identity() -> None:
    vq = VectorQuantizer(4, 3)
    z = torch.randn(5, 3, requires_grad=True)
    quantized, _, _ = vq(z)
    weights = torch.randn(5, 3)
    (quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)


def test_codebook_learns_by_gradient_only_without_ema() -> None:
    vq = VectorQuantizer(4, 3, ema=False)
    z = torch.randn(10, 3, requires_grad=True)
    vq(z)[2].backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    ema = VectorQuantizer(4, 3, ema=True)
    assert not ema.codebook.requires_grad


def test_ema_update_moves_codes_to_assigned_means() -> None:
    vq = VectorQuantizer(2, 1, ema=True, decay=0.5, eps=1e-12)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
        vq.embed_sum.copy_(vq.codebook)
        vq.cluster_size.fill_(1.0)
    z = torch.tensor([[1.0], [2.0], [9.0]])
    vq.train()(z)
    # cluster sizes 0.5·1 + 0.5·(2, 1) = (1.5, 1); sums 0.5·(0, 10) + 0.5·(3, 9) = (1.5, 9.5)
    torch.testing.assert_close(vq.cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(vq.codebook.detach(), torch.tensor([[1.0], [9.5]]))


def test_dead_codes_restart_on_batch_vectors() -> None:
    vq = VectorQuantizer(3, 2, restart_after=2)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0]]))
    z = torch.randn(6, 2) * 0.1
    vq.train()(z)
    assert vq.steps_unused.tolist() == [0, 1, 1]
    vq(z)
    codebook = vq.codebook.detach()
    for code in (1, 2):  # both unused twice: moved onto batch vectors
        assert (codebook[code] == z).all(dim=1).any()
    assert vq.steps_unused.tolist() == [0, 0, 0]


def test_kmeans_init_on_first_training_batch() -> None:
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    points = (centres[:, None] + 0.1 * torch.randn(3, 50, 2)).reshape(-1, 2)
    vq = VectorQuantizer(3, 2, kmeans_init=True)
    vq.eval()(points)
    assert not bool(vq.initialized)  # evaluation never initialises
    vq.train()(points)
    assert bool(vq.initialized)
    found = torch.cdist(centres, vq.codebook.detach()).min(dim=1).values
    assert (found < 0.1).all()
    assert kmeans(points, 3).shape == (3, 2)


def test_config_and_shape_errors() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        VQVAEConfig(image_size=30, downsample=2)
    with pytest.raises(ConfigError, match="codebook_size"):
        VQVAEConfig(codebook_size=0)
    with pytest.raises(ConfigError, match="unknown"):
        VQVAEConfig.from_dict({"colour": 3})
    model = VQVAE(VQVAEConfig(hidden=8, latent_dim=4, codebook_size=8))
    with pytest.raises(ShapeError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(2, 28, 28))
    with pytest.raises(ShapeError, match="0..7"):
        model.decode(torch.full((1, 7, 7), 8))
    with pytest.raises(ShapeError, match="size 4"):
        model.quantizer(torch.randn(2, 5))
    assert VQVAEConfig.from_dict(VQVAEConfig(hidden=9).to_dict()) == VQVAEConfig(hidden=9)
