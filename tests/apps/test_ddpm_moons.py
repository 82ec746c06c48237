"""The moons DDPM app: denoiser, config files, a short training run through the CLI, guidance, errors.

Quality bounds (data units; the moons have radius 1 and noise sd 0.05): after the "tiny" run (500
steps, seconds), samples lie on average < 0.2 from the nearest point of their requested moon, and
guidance w = 1 puts more of them on the right moon than w = 0 does (accuracy up by >= 0.01, to >= 0.98).
"""

import json
from pathlib import Path

import pytest
import torch

from fmblocks import cli
from fmblocks.apps import ddpm_moons as app
from fmblocks.diffusion import NULL_LABEL
from fmblocks.errors import CheckpointError, ConfigError, DataError


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained and sampled (w = 0 and 1) by `fmblocks ddpm train`."""
    out = tmp_path_factory.mktemp("ddpm") / "run"
    code = cli.main(["ddpm", "train", "--out", str(out), "--preset", "tiny", "--guidance", "0", "1",
                     "--n-per-class", "300"])
    assert code == 0
    return out


def metrics_at(run: Path) -> dict[float, dict]:
    return {row["w"]: row for row in json.loads((run / "metrics.json").read_text())["guidance"]}


def test_moons_data() -> None:
    points, labels = app.moons(1000, noise=0.0, seed=3)
    assert points.shape == (1000, 2) and points.dtype == torch.float32 and labels.tolist().count(1) == 500
    upper, lower = points[labels == 0], points[labels == 1]  # noise 0: unit half circles
    assert torch.allclose(upper.norm(dim=1), torch.ones(500), atol=1e-5) and bool((upper[:, 1] >= -1e-6).all())
    assert torch.allclose((lower - torch.tensor([1.0, 0.5])).norm(dim=1), torch.ones(500), atol=1e-5)


def test_denoiser_shapes_and_null_class() -> None:
    config = app.MoonsConfig(d_model=16, d_hidden=32, n_blocks=1, timesteps=10)
    denoiser = app.MoonsDenoiser(config)
    x, t = torch.randn(3, 2), torch.tensor([1, 5, 10])
    outputs = [denoiser(x, t, torch.full((3,), c)) for c in (0, 1, NULL_LABEL)]
    assert all(o.shape == (3, 2) for o in outputs)
    assert not torch.allclose(outputs[0], outputs[2]) and not torch.allclose(outputs[1], outputs[2])
    assert torch.allclose(denoiser(x[:1], t[:1], torch.tensor([1])), outputs[1][:1], atol=1e-6)  # rows independent


def test_config_round_trip(tmp_path: Path) -> None:
    config = app.MoonsConfig(d_model=32, norm="rms", activation="gelu", schedule="cosine", timesteps=7)
    config.save(tmp_path / "config.json")
    assert app.MoonsConfig.load(tmp_path / "config.json") == config
    with pytest.raises(ConfigError, match="unknown MoonsConfig field"):
        app.MoonsConfig.from_dict({"d_model": 32, "width": 3})


def test_short_training_puts_samples_on_the_requested_moon(run: Path) -> None:
    at_zero = metrics_at(run)[0.0]
    assert max(at_zero["distance_per_class"]) < 0.2
    assert at_zero["accuracy"] > 0.9
    assert (run / "checkpoint" / "model.safetensors").is_file() and (run / "loss.png").is_file()
    assert (run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_guidance_improves_class_separation(run: Path) -> None:
    metrics = metrics_at(run)  # seeds 0, 1, 2 measured: accuracy 0.973/0.985/0.958 at w = 0, 1.0/1.0/0.998 at w = 1
    assert metrics[1.0]["accuracy"] >= max(0.98, metrics[0.0]["accuracy"] + 0.01)


def test_sample_command_and_loading(run: Path) -> None:
    ddpm = app.load_ddpm(run)
    assert not ddpm.training and ddpm.schedule.timesteps == 50
    first, labels = app.sample_moons(ddpm, 5, guidance=2.0, seed=4)
    again, _ = app.sample_moons(ddpm, 5, guidance=2.0, seed=4)
    assert torch.equal(first, again) and labels.tolist() == [0] * 5 + [1] * 5  # seeded
    assert cli.main(["ddpm", "sample", "--out", str(run), "--guidance", "2", "--n-per-class", "20"]) == 0
    assert [row["w"] for row in json.loads((run / "metrics.json").read_text())["guidance"]] == [2.0]


def test_finished_run_is_not_retrained_and_conflicts_are_refused(run: Path) -> None:
    state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
    app.train(run, preset_name="tiny", progress=False)  # resumes at the last step: nothing to do
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == state["step"]
    record = app.read_run(run)
    with pytest.raises(CheckpointError, match="timesteps"):
        app.train(run, preset_name="tiny", progress=False, timesteps=20, noise=0.1)
    assert app.read_run(run) == record  # the refused run left run.json alone


def test_bad_input_gives_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    denoiser = app.MoonsDenoiser(app.MoonsConfig(d_model=8, d_hidden=8, n_blocks=1, timesteps=5))
    with pytest.raises(DataError, match="unknown class 2"):
        denoiser(torch.zeros(1, 2), torch.ones(1, dtype=torch.long), torch.tensor([2]))
    with pytest.raises(DataError, match="unknown class -3"):
        app.sample_quality(torch.zeros(1, 2), torch.tensor([-3]), *app.moons(10))
    for argv, message in [
        (["sample", "--out", str(tmp_path), "--guidance", "-1"], "guidance weight w must be a finite number >= 0"),
        (["sample", "--out", str(tmp_path)], "not a ddpm run directory"),
        (["train", "--out", str(tmp_path / "t"), "--timesteps", "0"], "T must be an integer >= 1"),
        (["train", "--out", str(tmp_path / "p"), "--preset", "tiny", "--noise", "-0.1"], "noise must be >= 0"),
    ]:
        assert cli.main(["ddpm", *argv]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # nothing written before the model was built
    assert cli.main(["ddpm", "train", "--out", str(tmp_path / "q"), "--schedule", "quadratic"]) == 2
    assert "unknown noise schedule 'quadratic'; known: cosine, linear" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("field", ["p_uncond"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5])
def test_config_refuses_non_finite_or_out_of_range(field: str, value: float) -> None:
    from fmblocks.errors import ConfigError

    with pytest.raises(ConfigError, match=f"MoonsConfig.{field}"):
        app.MoonsConfig(**{field: value})
