"""Denoising diffusion (DDPM, Ho et al., 2020) with classifier-free guidance (Ho & Salimans, 2022).

Timesteps follow the paper: x_0 is data, t = 1 .. T, and every table has T + 1 rows with row 0 meaning
"no noise" (beta_0 = 0, alpha_bar_0 = 1), so alpha_bar[t - 1] needs no special case.

    beta_t                                   the noise schedule, from SCHEDULES by name:
        "linear": T evenly spaced betas from 1e-4 * 1000/T to 0.02 * 1000/T (DDPM's range, rescaled so
                  that any T destroys the signal about as much as DDPM's T = 1000; Nichol & Dhariwal, 2021)
        "cosine": alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2), s = 0.008,
                  beta_t = 1 - alpha_bar(t) / alpha_bar(t-1)                   (Nichol & Dhariwal, 2021)
        betas are clipped to at most MAX_BETA = 0.9 (the cosine paper clips at 0.999). A sampling step
        passes an error of eps_theta on to x_{t-1} with gain beta_t / sqrt(alpha_t (1 - alpha_bar_t)):
        32 at beta = 0.999, which wrecked cosine samples of the moons app; 3 at 0.9, while alpha_bar_T
        stays tiny (2e-5 for cosine at T = 100). Without x_0 clipping (images clip to [-1, 1]) the
        lower cap is what keeps the last step stable. Linear betas reach 0.9 only for T < 23.
    alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s <= t} alpha_s

    forward noising   q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
                      x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,  eps ~ N(0, I)
    posterior         q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)
                      mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                              + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
                      beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t        (beta~_1 = 0)
    loss              E_{t, x_0, eps} || eps - eps_theta(x_t, t, c) ||^2     ("simple" loss, t uniform)
    ancestral step    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) + sqrt(beta~_t) z
                      (= mu~_t with x_0 predicted from eps_theta; the last step, t = 1, adds no noise)
    guidance          eps = (1 + w) eps_theta(x_t, t, c) - w eps_theta(x_t, t, null),  w >= 0
                      training replaces the class by NULL_LABEL with probability p_uncond, so one network
                      learns both the conditional and the unconditional noise.

A denoiser is any module `denoiser(x_t (B, ...), t (B,) long in 1..T, labels (B,) long) -> eps (B, ...)`
where label NULL_LABEL (-1) means "no class". `DDPM` wraps one for the fmblocks Trainer:
`DDPM(...)(x0=..., labels=...).loss`. Limits: epsilon prediction, the posterior variance beta~_t, and
T-step ancestral sampling only (no DDIM, no learned variances, no x_0 clipping).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from fmblocks.errors import ConfigError, DataError, ShapeError
from fmblocks.registry import Registry

NULL_LABEL = -1  # the "no class" label: the unconditional half of classifier-free guidance
MAX_BETA = 0.9  # see the module docstring
SCHEDULES: Registry[Callable[[int], torch.Tensor]] = Registry("noise schedule")
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@SCHEDULES.register("linear")
def linear_betas(timesteps: int) -> torch.Tensor:
    """(T,) betas evenly spaced from 1e-4 * 1000/T to 0.02 * 1000/T (float64)."""
    scale = 1000.0 / timesteps
    return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)


@SCHEDULES.register("cosine")
def cosine_betas(timesteps: int, *, s: float = 0.008) -> torch.Tensor:
    """(T,) betas with alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2) (float64)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps  # (T+1,) t/T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return 1 - alpha_bar[1:] / alpha_bar[:-1]


class NoiseSchedule(nn.Module):
    """The tables of a beta schedule, indexed by t = 0 .. T (row 0 = no noise); float32 buffers made in float64.

    NoiseSchedule(betas) for any (T,) betas in (0, 1); `NoiseSchedule.named("cosine", 100)` by name.
    Buffers are not saved in state dicts: a schedule is rebuilt from its name and T.
    """

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ConfigError(f"betas must be a non-empty 1-D tensor (T,), got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError(f"betas must lie in (0, 1), got range [{betas.min().item()}, {betas.max().item()}]")
        self.timesteps = len(betas)
        betas = torch.cat([betas.new_zeros(1), betas])  # (T+1,), beta_0 = 0
        alpha_bar = torch.cumprod(1 - betas, dim=0)  # (T+1,), alpha_bar_0 = 1
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])  # (T+1,), row 0 unused
        posterior_variance = (1 - alpha_bar_prev) / (1 - alpha_bar).clamp_min(1e-20) * betas  # 0 at t = 0, 1
        tables = {  # 1 - alpha_bar is kept apart: float32 would lose it when alpha_bar is near 1
            "betas": betas, "alphas": 1 - betas, "alpha_bar": alpha_bar, "alpha_bar_prev": alpha_bar_prev,
            "one_minus_alpha_bar": 1 - alpha_bar, "one_minus_alpha_bar_prev": 1 - alpha_bar_prev,
            "posterior_variance": posterior_variance,
        }
        for name, table in tables.items():
            self.register_buffer(name, table.float(), persistent=False)

    @classmethod
    def named(cls, name: str, timesteps: int) -> "NoiseSchedule":
        """The schedule registered as `name` ("linear" | "cosine") with T = `timesteps` >= 1 steps."""
        if not isinstance(timesteps, int) or timesteps < 1:
            raise ConfigError(f"the number of diffusion steps T must be an integer >= 1, got {timesteps!r}")
        return cls(SCHEDULES.get(name)(timesteps).clamp(max=MAX_BETA))

    def extra_repr(self) -> str:
        return f"T={self.timesteps}"

    def _at(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] shaped (B, 1, ..., 1) to broadcast against x (B, ...)."""
        if t.dtype not in (torch.int32, torch.int64) or t.shape != x.shape[:1]:
            raise ShapeError(f"t must be an integer tensor (B,) = {tuple(x.shape[:1])}, got {t.dtype} {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > self.timesteps):
            raise ShapeError(f"t must lie in 0..{self.timesteps}, got {int(t.min())}..{int(t.max())}")
        return table[t].reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_t | x_0): mean sqrt(alpha_bar_t) x_0 (B, ...) and variance 1 - alpha_bar_t (B, 1, ..., 1)."""
        return self._at(self.alpha_bar, t, x0).sqrt() * x0, self._at(self.one_minus_alpha_bar, t, x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise; all (B, ...)."""
        mean, variance = self.q_mean_variance(x0, t)
        return mean + variance.sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert q_sample for x_0 given the noise: (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        alpha_bar, one_minus_alpha_bar = self._at(self.alpha_bar, t, x_t), self._at(self.one_minus_alpha_bar, t, x_t)
        return (x_t - one_minus_alpha_bar.sqrt() * eps) / alpha_bar.sqrt()

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_{t-1} | x_t, x_0) for t >= 1: mean mu~_t (B, ...) and variance beta~_t (B, 1, ..., 1)."""
        beta, alpha = self._at(self.betas, t, x_t), self._at(self.alphas, t, x_t)
        alpha_bar_prev, one_minus_alpha_bar_prev = (self._at(self.alpha_bar_prev, t, x_t),
                                                    self._at(self.one_minus_alpha_bar_prev, t, x_t))
        one_minus_alpha_bar = self._at(self.one_minus_alpha_bar, t, x_t)
        mean = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * one_minus_alpha_bar_prev * x_t) / one_minus_alpha_bar
        return mean, self._at(self.posterior_variance, t, x_t)

    def p_mean_variance(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x_{t-1} | x_t): mean (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t), variance beta~_t."""
        beta, alpha = self._at(self.betas, t, x_t), self._at(self.alphas, t, x_t)
        mean = (x_t - beta / self._at(self.one_minus_alpha_bar, t, x_t).sqrt() * eps) / alpha.sqrt()
        return mean, self._at(self.posterior_variance, t, x_t)


def check_guidance(guidance: float) -> float:
    """`guidance` as a float, or ConfigError unless it is a finite number >= 0."""
    if not (isinstance(guidance, (int, float)) and math.isfinite(guidance) and guidance >= 0):
        raise ConfigError(f"guidance weight w must be a finite number >= 0 (0 = purely conditional), got {guidance!r}")
    return float(guidance)


def guided_epsilon(denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                   guidance: float) -> torch.Tensor:
    """Classifier-free guidance: (1 + w) eps(x_t, t, c) - w eps(x_t, t, null); w = 0 is one conditional call."""
    guidance = check_guidance(guidance)
    if guidance == 0:
        return denoiser(x_t, t, labels)
    batch = len(x_t)
    both = denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]),
                    torch.cat([labels, torch.full_like(labels, NULL_LABEL)]))  # (2B, ...): conditional, then null
    conditional, unconditional = both[:batch], both[batch:]
    return (1 + guidance) * conditional - guidance * unconditional


def drop_labels(labels: torch.Tensor, p_uncond: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label replaced by NULL_LABEL with probability p_uncond (label dropout for guidance training)."""
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p_uncond
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


@dataclass
class DiffusionOutput:
    """What `DDPM.forward` returns: the mean epsilon-prediction loss (the Trainer's `.loss`)."""

    loss: torch.Tensor


class DDPM(nn.Module):
    """A denoiser trained with the simple epsilon loss and sampled ancestrally, with optional guidance.

    forward(x0 (B, ...), labels (B,) long or None) -> DiffusionOutput(loss): draws t ~ U{1..T} and
    eps ~ N(0, I), and in training mode drops each label to NULL_LABEL with probability `p_uncond`.
    """

    def __init__(self, denoiser: nn.Module, schedule: NoiseSchedule, *, p_uncond: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p_uncond <= 1.0:
            raise ConfigError(f"p_uncond (label dropout probability) must be in [0, 1], got {p_uncond!r}")
        self.denoiser, self.schedule, self.p_uncond = denoiser, schedule, p_uncond

    def forward(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> DiffusionOutput:
        batch = len(x0)
        if labels is None:
            labels = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=x0.device)
        elif self.training and self.p_uncond > 0:
            labels = drop_labels(labels, self.p_uncond)
        t = torch.randint(1, self.schedule.timesteps + 1, (batch,), device=x0.device)
        noise = torch.randn_like(x0)
        eps = self.denoiser(self.schedule.q_sample(x0, t, noise), t, labels)
        return DiffusionOutput(loss=(eps - noise).pow(2).mean())

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, shape: tuple[int, ...], *, guidance: float = 0.0,
               generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """One sample (*shape) per entry of labels (B,) -> (B, *shape), by T ancestral steps from N(0, I)."""
        return ancestral_sample(self.denoiser, self.schedule, labels, shape, guidance=guidance,
                                generator=generator, progress=progress)


@torch.no_grad()
def reverse_step(denoiser: Denoiser, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                 *, guidance: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One ancestral step: x_{t-1} = mean + sqrt(beta~_t) z from p(x_{t-1} | x_t) with the guided eps; (B, ...)."""
    mean, variance = schedule.p_mean_variance(x_t, t, guided_epsilon(denoiser, x_t, t, labels, guidance))
    noise = torch.randn(x_t.shape, generator=generator, device=x_t.device)
    return mean + variance.sqrt() * noise  # variance is 0 at t = 1: the last step returns the mean


@torch.no_grad()
def ancestral_sample(denoiser: Denoiser, schedule: NoiseSchedule, labels: torch.Tensor, shape: tuple[int, ...], *,
                     guidance: float = 0.0, generator: torch.Generator | None = None,
                     progress: bool = False) -> torch.Tensor:
    """x_T ~ N(0, I), then x_{t-1} ~ p(x_{t-1} | x_t) for t = T .. 1 with guided eps; returns x_0 (B, *shape)."""
    check_guidance(guidance)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1:
        raise DataError(f"labels must be one class per sample (B,), got shape {tuple(labels.shape)}")
    device = schedule.betas.device
    labels = labels.to(device)
    x = torch.randn((len(labels), *shape), generator=generator, device=device)
    for step in tqdm(range(schedule.timesteps, 0, -1), desc="sample", unit="step", disable=not progress):
        t = torch.full((len(labels),), step, dtype=torch.long, device=device)
        x = reverse_step(denoiser, schedule, x, t, labels, guidance=guidance, generator=generator)
    return x
