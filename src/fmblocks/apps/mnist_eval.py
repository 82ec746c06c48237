"""Evaluating a class-conditioned MNIST decoder: test likelihood and class consistency.

Likelihood. For a test digit with class c and patch symbols s_1..s_196,

    NLL(image) = - sum_{t=1}^{196} log p(s_t | c, s_<t)          nats per image
    bits per pixel = mean NLL / (784 ln 2)                         (28 x 28 = 784 binary pixels)

with p the softmax of the decoder's logits over its whole vocabulary. The tokenisation of a binary
image is lossless (one symbol = four pixels), so this is the likelihood of the binarised image itself,
the quantity binarised-MNIST papers report. Differences to keep in mind when comparing: it is
conditioned on the class (at most ln 10 = 2.3 nats below the unconditional NLL), our binarisation is
the fixed threshold 128 (papers mostly sample pixels, which is harder), and the shipped data has
4,000 training digits, not 60,000.

Class consistency. A ViT classifier (trained on the binarised training split by `mnist_ar.train`)
labels generated samples; consistency is the share whose label is the requested class, reported
with the classifier's own test accuracy (its ceiling, roughly).
"""

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.apps.mnist_ar import (
    N_PATCHES, RUN_FORMAT, binary_images, encode_digits, load_classifier, load_decoder, read_run, run_preset,
)
from fmblocks.apps.mnist_sample import sample_digits
from fmblocks.data.mnist import IMAGE_SIZE, N_CLASSES, Digits, load_mnist
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.files import write_json

PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 784


@torch.no_grad()
def sequence_nll(decoder: nn.Module, sequences: torch.Tensor, *, batch_size: int = 250) -> torch.Tensor:
    """Negative log-likelihood in nats of each sequence's patch symbols given its class token: (N, 197) -> (N,)."""
    if sequences.ndim != 2 or sequences.shape[1] != N_PATCHES + 1:
        raise ShapeError(f"sequences must be (N, {N_PATCHES + 1}), got {tuple(sequences.shape)}")
    was_training = decoder.training
    decoder.eval()
    totals = []
    for chunk in sequences.split(batch_size):
        logits = decoder(chunk[:, :-1]).logits  # (B, 196, V): position t predicts symbol t + 1
        per_token = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")  # (B, V, 196) -> (B, 196)
        totals.append(per_token.sum(dim=1))
    decoder.train(was_training)
    return torch.cat(totals)


def bits_per_pixel(nats_per_image: float) -> float:
    """nats per 28x28 image -> bits per binary pixel."""
    return nats_per_image / (PIXELS * math.log(2))


@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Predicted classes (N,) of digits (N, 28, 28), binarised first (generated samples are binary)."""
    classifier.eval()
    inputs = binary_images(images)  # (N, 1, 28, 28) in {0, 1}
    return torch.cat([classifier(chunk).logits.argmax(dim=-1) for chunk in inputs.split(batch_size)])


def class_consistency(classifier: nn.Module, samples: torch.Tensor, requested: torch.Tensor) -> dict[str, Any]:
    """Share of samples the classifier assigns to their requested class, overall and per class."""
    predicted = classify(classifier, samples)
    hits = predicted == requested
    per_class = {str(c): round(hits[requested == c].float().mean().item(), 4)
                 for c in range(N_CLASSES) if (requested == c).any()}
    return {"class_consistency": round(hits.float().mean().item(), 4), "per_class": per_class}


def evaluate_run(
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    samples_per_class: int | None = None,
    guidance: float | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Test NLL, bits per pixel and class consistency of a trained run; written to out_dir/metrics.json.

    Unset options (None) take the run's: its data, and its preset's samples per class, guidance and top-p.
    """
    out_dir = Path(out_dir)
    run = read_run(out_dir)
    defaults = run_preset(run["preset"])
    data_dir = data_dir if data_dir is not None else run["data_dir"]
    n_samples = samples_per_class if samples_per_class is not None else defaults.samples_per_class
    guidance = guidance if guidance is not None else defaults.guidance
    top_p = top_p if top_p is not None else defaults.top_p
    if n_samples < 1:
        raise ConfigError(f"samples per class must be >= 1, got {n_samples}")
    _, test = load_mnist(data_dir)
    decoder = load_decoder(out_dir)
    nats = sequence_nll(decoder, encode_digits(test.images, test.labels)).mean().item()
    classifier = load_classifier(out_dir)
    requested = torch.arange(N_CLASSES).repeat_interleave(n_samples)  # (10 * n,) 0,0,..,1,1,..
    samples = sample_digits(decoder, requested, guidance=guidance, temperature=temperature, top_k=top_k, top_p=top_p,
                            seed=seed)
    metrics = {
        "test_nll_nats_per_image": round(nats, 3),
        "test_bits_per_pixel": round(bits_per_pixel(nats), 5),
        "n_test_images": len(test),
        **class_consistency(classifier, samples, requested),
        "samples_per_class": n_samples,
        "classifier_test_accuracy": round(classifier_accuracy(classifier, test), 4),
        "sampling": {"guidance": guidance, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed},
        "run": run,
    }
    write_json(out_dir / "metrics.json", metrics, fmt=f"{RUN_FORMAT}-metrics")
    return metrics


def classifier_accuracy(classifier: nn.Module, digits: Digits) -> float:
    """Share of `digits` the classifier labels correctly."""
    return (classify(classifier, digits.images) == digits.labels).float().mean().item()
