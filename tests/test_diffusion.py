"""DDPM math: schedules, forward noising, posterior, ancestral sampling, classifier-free guidance, errors.

References are computed here independently in float64 numpy from the betas (cumulative products,
Gaussian conditioning of the joint of (x_{t-1}, x_t) given x_0), never taken from the module.
"""

import math

import numpy as np
import pytest
import torch

from fmblocks.diffusion import (
    DDPM, NULL_LABEL, NoiseSchedule, ancestral_sample, drop_labels, guided_epsilon, reverse_step,
)
from fmblocks.errors import ConfigError, DataError, ShapeError, UnknownNameError


def alpha_bars(schedule: NoiseSchedule) -> np.ndarray:
    """(T+1,) alpha_bar_t = prod_{s <= t} (1 - beta_s) in float64, alpha_bar_0 = 1."""
    betas = schedule.betas.double().numpy()[1:]
    return np.concatenate([[1.0], np.cumprod(1 - betas)])


def oracle(point: torch.Tensor, schedule: NoiseSchedule):
    """The exact noise predictor for data = one point: eps = (x_t - sqrt(alpha_bar_t) x*) / sqrt(1 - alpha_bar_t)."""
    def denoiser(x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alpha_bar.double()[t][:, None]  # (B, 1)
        return ((x_t.double() - alpha_bar.sqrt() * point.double()) / (1 - alpha_bar).sqrt()).float()
    return denoiser


# ---- schedules -------------------------------------------------------------------------------------------
def test_linear_schedule_hand_worked() -> None:
    ddpm = NoiseSchedule.named("linear", 1000)  # DDPM's own setting: 1e-4 .. 0.02
    assert ddpm.betas[0] == 0 and ddpm.alpha_bar[0] == 1
    assert ddpm.betas[1].item() == pytest.approx(1e-4) and ddpm.betas[1000].item() == pytest.approx(0.02)
    short = NoiseSchedule.named("linear", 2)  # scale 500: betas 0.05 and 10 -> clipped to 0.9
    assert short.betas[1:].tolist() == pytest.approx([0.05, 0.9])
    assert short.alpha_bar.tolist() == pytest.approx([1.0, 0.95, 0.95 * 0.1])


def test_cosine_schedule_follows_its_formula() -> None:
    T, s = 20, 0.008
    schedule = NoiseSchedule.named("cosine", T)
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    expected = [ft / f[0] for ft in f[:T]]  # alpha_bar_0 .. alpha_bar_{T-1}; the last beta is clipped
    assert schedule.alpha_bar[:T].tolist() == pytest.approx(expected, rel=1e-5)
    assert schedule.betas[T].item() == pytest.approx(0.9)
    assert bool((schedule.betas[1:].diff() > 0).all())  # noise grows with t


# ---- forward noising -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_forward_noising_has_the_closed_form_moments(name: str) -> None:
    schedule = NoiseSchedule.named(name, 50)
    x0 = torch.tensor([1.5, -0.5])
    for step in (1, 10, 49):
        abar = alpha_bars(schedule)[step]
        t = torch.full((1,), step)
        mean, variance = schedule.q_mean_variance(x0[None], t)
        assert mean[0].tolist() == pytest.approx((math.sqrt(abar) * x0).tolist(), rel=1e-5)
        assert variance.item() == pytest.approx(1 - abar, rel=1e-5)
        n = 200_000
        samples = schedule.q_sample(x0.expand(n, 2), torch.full((n,), step), torch.randn(n, 2)).double()
        sd = math.sqrt(1 - abar)
        assert (samples.mean(0) - math.sqrt(abar) * x0.double()).abs().max() < 5 * sd / math.sqrt(n)
        assert (samples.var(0) / (1 - abar) - 1).abs().max() < 5 * math.sqrt(2 / n)  # sd of a sample variance
        correlation = torch.corrcoef(samples.T)[0, 1]
        assert abs(correlation) < 5 / math.sqrt(n)  # isotropic: independent coordinates


def test_predict_x0_inverts_q_sample() -> None:
    schedule = NoiseSchedule.named("linear", 30)
    x0, noise, t = torch.randn(8, 2), torch.randn(8, 2), torch.randint(1, 31, (8,))
    assert torch.allclose(schedule.predict_x0(schedule.q_sample(x0, t, noise), t, noise), x0, atol=1e-3)


# ---- posterior and reverse step ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_is_gaussian_conditioning_of_the_joint(name: str) -> None:
    schedule = NoiseSchedule.named(name, 40)
    abar, betas = alpha_bars(schedule), schedule.betas.double().numpy()
    x0, x_t = torch.randn(39, 3), torch.randn(39, 3)
    t = torch.arange(2, 41)
    mean, variance = schedule.posterior(x0, x_t, t)
    for row, step in enumerate(t.tolist()):
        # given x_0: x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}); x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z
        m1, v1 = math.sqrt(abar[step - 1]), 1 - abar[step - 1]
        a = math.sqrt(1 - betas[step])
        m2, v2, cov = a * m1, a * a * v1 + betas[step], a * v1
        x0_row, xt_row = x0[row].double().numpy(), x_t[row].double().numpy()
        want_mean = m1 * x0_row + cov / v2 * (xt_row - m2 * x0_row)
        want_var = v1 - cov * cov / v2
        assert mean[row].double().numpy() == pytest.approx(want_mean, rel=1e-4, abs=1e-5)
        assert variance[row].item() == pytest.approx(want_var, rel=1e-4)
    first_mean, first_var = schedule.posterior(x0[:1], x_t[:1], torch.tensor([1]))
    assert torch.allclose(first_mean, x0[:1]) and first_var.item() == 0  # q(x_0 | x_1, x_0) is a point


def test_reverse_mean_is_the_posterior_at_the_predicted_x0() -> None:
    schedule = NoiseSchedule.named("cosine", 25)
    x_t, eps, t = torch.randn(24, 2), torch.randn(24, 2), torch.arange(1, 25)
    mean, variance = schedule.p_mean_variance(x_t, t, eps)
    want_mean, want_var = schedule.posterior(schedule.predict_x0(x_t, t, eps), x_t, t)
    assert torch.allclose(mean, want_mean, rtol=1e-4, atol=1e-4) and torch.equal(variance, want_var)


def test_reverse_step_draws_from_the_ddpm_reverse_gaussian() -> None:
    schedule = NoiseSchedule.named("cosine", 30)
    abar, betas = alpha_bars(schedule), schedule.betas.double().numpy()
    n, step = 200_000, 12
    x_t, eps = torch.tensor([0.8, -0.4]), torch.tensor([0.3, 1.1])
    draws = reverse_step(lambda x, t, c: eps.expand_as(x), schedule, x_t.expand(n, 2), torch.full((n,), step),
                         torch.zeros(n, dtype=torch.long), generator=torch.Generator().manual_seed(0)).double()
    want_mean = (x_t.double().numpy() - betas[step] / math.sqrt(1 - abar[step]) * eps.double().numpy()) / math.sqrt(1 - betas[step])
    want_var = (1 - abar[step - 1]) / (1 - abar[step]) * betas[step]
    assert (draws.mean(0).numpy() - want_mean) == pytest.approx([0, 0], abs=5 * math.sqrt(want_var / n))
    assert (draws.var(0) / want_var - 1).abs().max() < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_sampling_with_the_oracle_recovers_a_single_point(name: str) -> None:
    schedule = NoiseSchedule.named(name, 100)
    point = torch.tensor([0.7, -1.3])
    labels = torch.zeros(256, dtype=torch.long)
    samples = ancestral_sample(oracle(point, schedule), schedule, labels, (2,), generator=torch.Generator().manual_seed(1))
    assert samples.shape == (256, 2)
    assert (samples - point).abs().max() < 1e-3


def test_ddpm_loss_is_zero_for_the_oracle_and_one_for_zero_noise() -> None:
    schedule = NoiseSchedule.named("linear", 50)
    point = torch.tensor([0.7, -1.3])

    class Oracle(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return oracle(point, schedule)(x_t, t, labels)

    class Zero(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x_t)

    x0 = point.expand(20_000, 2)
    assert DDPM(Oracle(), schedule)(x0).loss.item() < 1e-8
    assert DDPM(Zero(), schedule)(x0).loss.item() == pytest.approx(1.0, abs=0.03)  # E[eps^2] = 1


# ---- classifier-free guidance ------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """A toy denoiser eps = x * (label + 2) + t that records the labels it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls.append(labels.clone())
        return x_t * (labels + 2)[:, None] + t[:, None]


def test_guidance_zero_is_the_conditional_model() -> None:
    model, x, t, labels = Recorder(), torch.randn(5, 2), torch.arange(1, 6), torch.tensor([0, 1, 0, 1, 1])
    assert torch.equal(guided_epsilon(model, x, t, labels, 0.0), model(x, t, labels))
    assert len(model.calls) == 2 and not bool((model.calls[0] == NULL_LABEL).any())  # one call, no null pass


@pytest.mark.parametrize("w", [0.5, 1.0, 4.0])
def test_guidance_combines_conditional_and_unconditional(w: float) -> None:
    model, x, t, labels = Recorder(), torch.randn(5, 2), torch.arange(1, 6), torch.tensor([0, 1, 0, 1, 1])
    conditional = x * (labels + 2)[:, None] + t[:, None]
    unconditional = x * (NULL_LABEL + 2) + t[:, None]
    expected = (1 + w) * conditional - w * unconditional
    assert torch.allclose(guided_epsilon(model, x, t, labels, w), expected)


def test_label_dropout_rate() -> None:
    labels = torch.ones(100_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.3, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {NULL_LABEL, 1}
    assert (dropped == NULL_LABEL).double().mean().item() == pytest.approx(0.3, abs=0.005)
    assert torch.equal(drop_labels(labels, 0.0), labels)
    assert bool((drop_labels(labels, 1.0) == NULL_LABEL).all())


def test_training_mode_drops_labels_and_eval_mode_does_not() -> None:
    model, schedule = Recorder(), NoiseSchedule.named("linear", 10)
    ddpm = DDPM(model, schedule, p_uncond=0.5)
    ddpm(torch.randn(1000, 2), torch.ones(1000, dtype=torch.long))
    assert 0.4 < (model.calls[-1] == NULL_LABEL).double().mean().item() < 0.6
    ddpm.eval()(torch.randn(1000, 2), torch.ones(1000, dtype=torch.long))
    assert bool((model.calls[-1] == 1).all())
    ddpm(torch.randn(4, 2))  # no labels: unconditional
    assert bool((model.calls[-1] == NULL_LABEL).all())


# ---- errors --------------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match="known: cosine, linear"):
        NoiseSchedule.named("quadratic", 10)
    for T in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="T must be an integer >= 1"):
            NoiseSchedule.named("linear", T)
    with pytest.raises(ConfigError, match=r"betas must lie in \(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    schedule, model = NoiseSchedule.named("linear", 10), Recorder()
    for w in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="guidance weight w must be a finite number >= 0"):
            guided_epsilon(model, torch.zeros(1, 2), torch.ones(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), w)
    with pytest.raises(ConfigError, match="guidance"):
        ancestral_sample(model, schedule, torch.zeros(2, dtype=torch.long), (2,), guidance=-0.5)
    with pytest.raises(ShapeError, match="t must lie in 0..10"):
        schedule.q_sample(torch.zeros(1, 2), torch.tensor([11]), torch.zeros(1, 2))
    with pytest.raises(DataError, match=r"one class per sample \(B,\)"):
        ancestral_sample(model, schedule, torch.zeros(2, 2, dtype=torch.long), (2,))
    with pytest.raises(ConfigError, match="p_uncond"):
        DDPM(model, schedule, p_uncond=1.5)
