"""Autoregressive MNIST: layout, exact round trip, overfitting two digits, NLL, guidance, pictures, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from fmblocks.apps.mnist_ar import (
    CLASS_OFFSET, N_SYMBOLS, NO_CLASS, SEQ_LEN, VOCAB_SIZE, DigitSequences, class_tokens, decode_sequences,
    encode_digits, run_preset, shifted_copies,
)
from fmblocks.apps.mnist_eval import bits_per_pixel, class_consistency, sequence_nll
from fmblocks.apps.mnist_plots import plot_samples, plot_unrolling
from fmblocks.apps.mnist_sample import GuidedSymbols, sample_digits
from fmblocks.data.mnist import Digits, load_shipped
from fmblocks.errors import ConfigError, DataError, ShapeError, UnknownNameError
from fmblocks.models import build_model, preset
from fmblocks.training import TrainConfig, Trainer

TINY = dict(vocab_size=VOCAB_SIZE, max_len=SEQ_LEN, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64)


def tiny_decoder() -> torch.nn.Module:
    return build_model(preset("llama-style", **TINY)).eval()


@pytest.fixture(scope="module")
def digits() -> Digits:
    shipped = load_shipped()
    first = [int(torch.nonzero(shipped.labels == c)[0]) for c in range(10)]  # one digit per class
    return Digits(shipped.images[first], shipped.labels[first])


def test_hand_worked_layout() -> None:
    """Class 3 -> token 19; the top-left 2x2 block [[1, 0], [1, 1]] -> 8 + 2 + 1 = 11; the rest 0."""
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[0, 0] = image[1, 0] = image[1, 1] = 255
    image[27, 27] = 200  # bottom-right block [[0, 0], [0, 1]] -> 1, the last token
    sequence = encode_digits(image[None], torch.tensor([3]))[0]
    assert sequence.shape == (SEQ_LEN,) == (197,)
    assert sequence[0] == CLASS_OFFSET + 3 == 19
    assert sequence[1] == 11 and sequence[-1] == 1 and sequence[2:-1].eq(0).all()


def test_digit_round_trips_exactly_through_the_sequence(digits: Digits) -> None:
    sequences = encode_digits(digits.images, digits.labels)  # (10, 197)
    images, labels = decode_sequences(sequences)
    assert torch.equal(labels, digits.labels)
    assert torch.equal(images, (digits.images >= 128).to(torch.uint8))  # lossless on the binarised digit
    assert torch.equal(encode_digits(images, labels), sequences)
    assert sequences[:, 1:].max() < N_SYMBOLS and sequences[:, 0].min() >= CLASS_OFFSET


def test_dataset_predicts_the_patches_only(digits: Digits) -> None:
    example = DigitSequences(digits)[4]
    sequence = encode_digits(digits.images[4:5], digits.labels[4:5])[0]
    assert torch.equal(example["input_ids"], sequence[:-1]) and torch.equal(example["targets"], sequence[1:])
    assert example["targets"].max() < N_SYMBOLS  # the class token is never a target


def test_class_dropout_hides_the_class_at_the_requested_rate_and_only_the_class(digits: Digits) -> None:
    many = Digits(digits.images.repeat(40, 1, 1), digits.labels.repeat(40))  # 400 digits
    data = DigitSequences(many, class_dropout=0.25, seed=1)
    hidden = [data[i]["input_ids"][0].item() == NO_CLASS for i in range(len(data))]
    assert 0.18 < sum(hidden) / len(hidden) < 0.32
    assert torch.equal(data[0]["targets"], DigitSequences(many)[0]["targets"])
    again = [data[i]["input_ids"][0].item() == NO_CLASS for i in range(len(data))]
    data.set_epoch(1)
    assert hidden == again and hidden != [data[i]["input_ids"][0].item() == NO_CLASS for i in range(len(data))]
    with pytest.raises(ConfigError):
        DigitSequences(many, class_dropout=1.0)


def test_tiny_model_overfit_on_two_digits_regenerates_each_from_its_class(digits: Digits) -> None:
    pair = Digits(digits.images[[2, 7]], digits.labels[[2, 7]])  # classes 2 and 7
    config = preset("llama-style", **TINY)
    model = build_model(config)
    train = TrainConfig(steps=250, batch_size=2, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1, weight_decay=0.0,
                        eval_every=0, progress=False)
    Trainer(model, DigitSequences(pair), config=train, model_config=config).fit()
    samples = sample_digits(model, pair.labels, temperature=0)
    assert torch.equal(samples, (pair.images >= 128).to(torch.uint8))


def test_nll_is_the_sum_of_per_token_cross_entropies(digits: Digits) -> None:
    model = tiny_decoder()
    sequences = encode_digits(digits.images[:3], digits.labels[:3])
    nll = sequence_nll(model, sequences, batch_size=2)
    logits = model(sequences[:, :-1]).logits  # (3, 196, 26)
    for i in range(3):
        expected = sum(F.cross_entropy(logits[i, t], sequences[i, t + 1]) for t in range(196))
        assert nll[i].item() == pytest.approx(expected.item(), rel=1e-5)
    mean_loss = model(sequences[:, :-1], sequences[:, 1:]).loss  # mean over the 3 * 196 targets
    assert nll.mean().item() == pytest.approx(196 * mean_loss.item(), rel=1e-5)


def test_bits_per_pixel() -> None:
    assert bits_per_pixel(784 * math.log(2)) == pytest.approx(1.0)
    assert bits_per_pixel(100.0) == pytest.approx(100.0 / 543.4273, rel=1e-6)


def test_guided_logits_mix_conditional_and_unconditional_over_symbols_only() -> None:
    model = tiny_decoder()
    ids = torch.cat([class_tokens(torch.tensor([4, 8]))[:, None], torch.randint(0, N_SYMBOLS, (2, 5))], dim=1)
    without = ids.clone()
    without[:, 0] = NO_CLASS
    conditional, unconditional = model(ids).logits, model(without).logits
    for w in (0.0, 1.5):
        guided = GuidedSymbols(model, w)(ids).logits
        assert guided[..., N_SYMBOLS:].eq(float("-inf")).all()  # class tokens are never sampled
        expected = conditional + w * (conditional - unconditional)
        torch.testing.assert_close(guided[..., :N_SYMBOLS], expected[..., :N_SYMBOLS])
    with pytest.raises(ConfigError):
        GuidedSymbols(model, -1.0)


def test_guided_sampling_with_the_cache_equals_without() -> None:
    """The doubled batch shares the KV caches: cached and uncached generation give the same digits."""
    from fmblocks.generation import generate

    model = tiny_decoder()
    prompt = class_tokens(torch.tensor([2, 6]))[:, None]
    runs = [generate(GuidedSymbols(model, 1.0), prompt, 30, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(*runs)


def test_sampling_is_seeded_and_gives_binary_digits() -> None:
    model = tiny_decoder()
    a, b = (sample_digits(model, torch.tensor([1, 5]), guidance=1.0, top_p=0.9, seed=s) for s in (3, 3))
    assert torch.equal(a, b) and a.shape == (2, 28, 28) and a.max() <= 1


def test_sampling_leaves_the_decoder_in_its_mode() -> None:
    model = tiny_decoder()
    for training in (False, True):
        model.train(training)
        sample_digits(model, torch.tensor([4]), guidance=1.0)
        assert model.training == training


def test_class_consistency_counts_matches() -> None:
    class Fixed(torch.nn.Module):  # says "class 1" for every image
        def forward(self, images: torch.Tensor):
            return type("Out", (), {"logits": F.one_hot(torch.ones(len(images), dtype=torch.long), 10).float()})

    result = class_consistency(Fixed(), torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([1, 1, 1, 2]))
    assert result["class_consistency"] == 0.75 and result["per_class"] == {"1": 1.0, "2": 0.0}


def test_pictures_are_pngs(digits: Digits, tmp_path) -> None:
    grid = plot_samples(decode_sequences(encode_digits(digits.images, digits.labels))[0], tmp_path / "s.png")
    unrolled = plot_unrolling(digits.images[0], 0, tmp_path / "u.png")
    for path in (grid, unrolled):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ShapeError, match="rows"):
        plot_samples(torch.zeros(7, 28, 28), tmp_path / "bad.png")


def test_bad_input_is_refused(digits: Digits) -> None:
    with pytest.raises(DataError, match="0..9"):
        class_tokens(torch.tensor([3, 10]))
    with pytest.raises(DataError, match="0..9"):
        sample_digits(tiny_decoder(), torch.tensor([-1]))
    with pytest.raises(ShapeError, match=r"\(N, 28, 28\)"):
        encode_digits(torch.zeros(2, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="2 images but 1"):
        encode_digits(digits.images[:2], digits.labels[:1])
    with pytest.raises(DataError, match="class token"):
        decode_sequences(torch.zeros(1, SEQ_LEN, dtype=torch.long))
    with pytest.raises(ShapeError, match="197"):
        decode_sequences(torch.zeros(1, 196, dtype=torch.long))


def test_shifted_copies_move_whole_digits() -> None:
    image = torch.zeros(1, 8, 8)
    image[0, 3:5, 3:5] = 1
    images, labels = shifted_copies(image, torch.tensor([7]), 3, max_shift=2, seed=0)
    assert images.shape == (4, 8, 8) and labels.tolist() == [7] * 4 and torch.equal(images[0], image[0])
    for copy in images[1:]:
        rows, cols = torch.nonzero(copy, as_tuple=True)
        assert copy.sum() == 4 and rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1
        assert 1 <= rows.min() <= 5 and 1 <= cols.min() <= 5


def test_presets_are_valid_and_unknown_names_are_listed() -> None:
    for name in ("tiny", "default", "long"):
        run = run_preset(name)
        assert run.decoder.vocab_size == VOCAB_SIZE and run.decoder.max_len == SEQ_LEN
        assert run.classifier.arch == "vit" and run.classifier.n_classes == 10
    assert run_preset("default", steps=7).train.steps == 7
    with pytest.raises(UnknownNameError, match="default"):
        run_preset("huge")


def test_training_is_seeded(tmp_path) -> None:
    from fmblocks.apps.mnist_ar import load_classifier, load_decoder, train

    runs = [train(tmp_path / name, preset_name="tiny", steps=3, progress=False) for name in ("a", "b")]
    for load in (load_decoder, load_classifier):
        first, second = (load(run).state_dict() for run in runs)
        assert all(torch.equal(first[key], second[key]) for key in first)
