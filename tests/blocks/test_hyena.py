"""Hyena: a hand-worked recurrence; FFT equals a direct O(L^2) convolution; causal; the returned weights make the
output; a cache decodes step by step; gradients finite at 64k; options checked; a Hyena DNA model learns a FASTA."""

import random

import pytest
import torch

from fmblocks.blocks.hyena import HyenaFilter, HyenaMixer, decay_window, hyena_recurrence
from fmblocks.blocks.long_conv import causal_conv_direct
from fmblocks.blocks.mixers import MixerSpec, build_mixer
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.generation import generate
from fmblocks.models import build_model, preset
from fmblocks.tokenizers.bio import read_fasta
from fmblocks.tokenizers.bio_dna import KmerTokenizer


def mixer_of(d: int = 6, max_len: int = 40, **options) -> HyenaMixer:
    torch.manual_seed(0)
    return HyenaMixer(d, max_len, **options).double().eval()


def explicit(mixer: HyenaMixer, x: torch.Tensor) -> torch.Tensor:
    """The operator written out: every convolution a plain sum over the past, O(T^2) per channel."""
    u = mixer.in_proj(x)  # (B, T, (N+1) D)
    taps = mixer.short_conv.weight.shape[1]
    short = torch.stack([sum(mixer.short_conv.weight[:, j] * u[:, t - j] for j in range(min(taps, t + 1)))
                         for t in range(x.shape[1])], dim=1) + mixer.short_conv.bias
    z, *gates = short.chunk(mixer.order + 1, dim=-1)
    kernels = mixer.filter(x.shape[1])  # (N, D, T)
    for gate, h in zip(gates, kernels):
        conv = torch.stack([sum(h[:, t - s] * z[:, s] for s in range(t + 1)) for t in range(x.shape[1])], dim=1)
        z = gate * conv
    return mixer.out_proj(z)


def test_recurrence_hand_worked() -> None:
    v = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)
    gates = [torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1), torch.ones(1, 3, 1)]
    kernels = torch.tensor([[[1.0, 10.0, 0.0]], [[0.0, 1.0, 0.0]]])  # h^1 = 1 + 10 shift, h^2 = one shift
    # h^1 * v = [1, 12, 23]; gated: z^2 = [1, 6, 46]; h^2 * z^2 = [0, 1, 6]
    first = hyena_recurrence(v, gates[:1], kernels[:1], None, conv=causal_conv_direct)
    assert first.flatten().tolist() == [1.0, 6.0, 46.0]
    assert hyena_recurrence(v, gates, kernels, None).flatten().tolist() == pytest.approx([0.0, 1.0, 6.0], abs=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_fft_operator_equals_the_direct_convolution(order: int) -> None:
    mixer = mixer_of(order=order, short_kernel=4)
    x = torch.randn(2, 23, 6, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), explicit(mixer, x), atol=1e-10, rtol=1e-10)


def test_fft_equals_direct_at_full_length_with_gradients() -> None:
    mixer = mixer_of(d=4, max_len=300)
    x = torch.randn(1, 300, 4, dtype=torch.float64, requires_grad=True)
    v, *gates = mixer.short_conv(mixer.in_proj(x)).chunk(3, dim=-1)
    kernels = mixer.filter(300)
    fast = hyena_recurrence(v, gates, kernels, None)
    direct = hyena_recurrence(v, gates, kernels, None, conv=causal_conv_direct)
    torch.testing.assert_close(fast, direct, atol=1e-10, rtol=1e-8)
    params = [x, *mixer.filter.parameters()]
    grad = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(fast, params, grad, retain_graph=True), torch.autograd.grad(direct, params, grad)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)


def test_filters_depend_on_the_lag_only_and_decay() -> None:
    filters = HyenaFilter(8, 2, 64, hidden=16).double()
    short, full = filters(10), filters(64)
    assert full.shape == (2, 8, 64)
    torch.testing.assert_close(short, full[..., :10], atol=1e-12, rtol=0)
    window = decay_window(64, 64, 8, dtype=torch.float64)  # (D, P): unit L2 norm, decreasing, channels differ
    torch.testing.assert_close(window.norm(dim=-1), torch.ones(8, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (window.diff(dim=-1) < 0).all() and (window[:, -1] / window[:, 0]).diff().lt(0).all()


def test_causal_and_independent_of_the_causal_flag() -> None:
    mixer = mixer_of()
    x = torch.randn(2, 30, 6, dtype=torch.float64)
    base = mixer(x)
    torch.testing.assert_close(mixer(x, causal=True), base, atol=0, rtol=0)
    for j in (0, 13, 29):
        changed = x.clone()
        changed[:, j] += 1.0
        after = mixer(changed)
        assert j == 0 or (after[:, :j] - base[:, :j]).abs().max() < 1e-12
        assert (after[:, j] - base[:, j]).abs().max() > 1e-6


def test_weights_are_the_composite_operator_and_make_the_output() -> None:
    mixer = mixer_of(order=3)
    x = torch.randn(2, 12, 6, dtype=torch.float64)
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[1, :4] = False  # left padding
    y, weights = mixer(x, mask=keep[:, None, None, :], return_weights=True)
    assert weights.shape == (2, 6, 12, 12) and (weights.triu(1) == 0).all() and (weights[1, ..., :4] == 0).all()
    v = mixer.short_conv(mixer.in_proj(x) * keep[..., None]).chunk(4, dim=-1)[0]
    torch.testing.assert_close(mixer.out_proj(torch.einsum("bcts,bsc->btc", weights, v)), y, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(y[1, 4:], mixer(x[1:, 4:])[0], atol=1e-10, rtol=1e-10)  # padding is invisible


def test_cache_decodes_step_by_step_like_the_whole_sequence() -> None:
    mixer = mixer_of(order=2)
    x = torch.randn(2, 17, 6, dtype=torch.float64)
    whole, whole_weights = mixer(x, return_weights=True)
    cache = mixer.new_cache()
    parts = [mixer(x[:, :9], cache=cache)]
    for t in range(9, 17):
        out, weights = mixer(x[:, t : t + 1], cache=cache, return_weights=True)
        parts.append(out)
        assert weights.shape == (2, 6, 1, t + 1)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(weights[:, :, 0], whole_weights[:, :, -1], atol=1e-12, rtol=0)
    assert cache.length == 17


def test_gradients_are_finite_at_64k() -> None:
    torch.manual_seed(0)
    mixer = HyenaMixer(8, 65536, filter_hidden=16)
    x = torch.randn(1, 65536, 8, requires_grad=True)
    y = mixer(x)
    y.square().mean().backward()
    assert y.isfinite().all() and x.grad.isfinite().all() and x.grad[0, 0].abs().sum() > 0  # the first input reaches far
    for name, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.isfinite().all(), name


def test_options_and_lengths_are_checked() -> None:
    spec = MixerSpec(8, 2, max_len=16)
    assert build_mixer("hyena", spec, order=3).order == 3
    with pytest.raises(ConfigError, match=r"mixer 'hyena' has no option 'window'; known options: order, filter_hidden"):
        build_mixer("hyena", spec, window=3)
    with pytest.raises(ConfigError, match=r"short_kernel must be a positive integer, got 0"):
        build_mixer("hyena", spec, short_kernel=0)
    mixer = build_mixer("hyena", spec)
    with pytest.raises(ShapeError, match=r"hyena reads at most max_len=16 positions, got 17"):
        mixer(torch.randn(1, 17, 8))
    with pytest.raises(ConfigError, match=r"the hyena mixer supports only a boolean key-padding mask"):
        mixer(torch.randn(1, 4, 8), mask=torch.ones(4, 4, dtype=torch.bool).tril())
    with pytest.raises(ConfigError, match=r"cannot read a context"):
        mixer(torch.randn(1, 4, 8), context=torch.randn(1, 3, 8))


def test_a_hyena_dna_model_learns_a_fasta_and_generates(tmp_path) -> None:
    rng = random.Random(0)
    motif = "".join(rng.choice("ACGT") for _ in range(12))
    genome = "".join(base if rng.random() > 0.05 else rng.choice("ACGT") for base in motif * 60)  # 5% mutations
    path = tmp_path / "genome.fa"
    path.write_text(">chr1 test\n" + "\n".join(genome[i : i + 60] for i in range(0, len(genome), 60)) + "\n")
    tokenizer = KmerTokenizer(k=1)
    ids = torch.tensor(tokenizer.encode(read_fasta(path)[0][1]))
    torch.manual_seed(0)
    config = preset("hyena-dna", d_model=32, d_ff=64, max_len=128)
    assert config.vocab_size == tokenizer.vocab_size
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    windows = ids.unfold(0, 65, 16)  # (N, 65)
    losses = []
    for _ in range(50):
        batch = windows[torch.randint(0, len(windows), (8,))]
        loss = model(batch[:, :-1], batch[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    model.eval()
    prompt = ids[None, :24]
    cached = generate(model, prompt, 24, temperature=0)
    assert torch.equal(cached, generate(model, prompt, 24, temperature=0, use_cache=False))
    bases = tokenizer.decode(cached[0].tolist())
    assert set(bases) <= set("ACGTN") and len(bases) == 48
    assert sum(a == b for a, b in zip(bases[24:], (motif * 5)[24:48])) >= 18  # it continues the motif
