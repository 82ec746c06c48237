"""The pair-representation demo: the chain generator (hand-worked chains, seeded, its geometry), the model and
its baseline without triangle operators, a tiny run through `fmblocks pair-demo`, errors."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from fmblocks import cli
from fmblocks.apps import pair_chains as chains
from fmblocks.apps import pair_distances as app
from fmblocks.blocks.pair import PairformerBlock, TriangleAttention, TriangleMultiplication
from fmblocks.errors import DataError

B = chains.BOND


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both models of the tiny preset trained and evaluated by `fmblocks pair-demo train`."""
    out = tmp_path_factory.mktemp("pair") / "run"
    assert cli.main(["pair-demo", "train", "--out", str(out), "--preset", "tiny", "--chain", "3"]) == 0
    return out


def angles(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bend angles (B, N-2) and torsions (B, N-3) in degrees, measured from points (B, N, 3)."""
    bonds = points[:, 1:] - points[:, :-1]  # (B, N-1, 3)
    cos = -(bonds[:, :-1] * bonds[:, 1:]).sum(-1) / (bonds[:, :-1].norm(dim=-1) * bonds[:, 1:].norm(dim=-1))
    n1 = torch.linalg.cross(bonds[:, :-2], bonds[:, 1:-1], dim=-1)
    n2 = torch.linalg.cross(bonds[:, 1:-1], bonds[:, 2:], dim=-1)
    axis = torch.nn.functional.normalize(bonds[:, 1:-1], dim=-1)
    torsion = torch.atan2((torch.linalg.cross(n1, n2, dim=-1) * axis).sum(-1), (n1 * n2).sum(-1))  # IUPAC sign
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1))), torch.rad2deg(torsion)


def test_hand_worked_chains() -> None:
    right = torch.full((3, 2), math.pi / 2, dtype=torch.float64)
    torsion = torch.tensor([[0.0], [math.pi], [math.pi / 2]], dtype=torch.float64)
    points = chains.chain_coordinates(right, torsion)  # right-angled bends: cis (a square), trans (a zigzag), twisted
    expected = torch.tensor([[[0, 0, 0], [B, 0, 0], [B, B, 0], [0, B, 0]],
                             [[0, 0, 0], [B, 0, 0], [B, B, 0], [2 * B, B, 0]],
                             [[0, 0, 0], [B, 0, 0], [B, B, 0], [B, B, B]]], dtype=torch.float64)
    torch.testing.assert_close(points, expected)
    assert torch.cdist(points, points)[:, 0, 3].tolist() == pytest.approx([B, B * math.sqrt(5), B * math.sqrt(3)])
    # a "TTTTT" chain: bends of 80 degrees, so d(0, 2) = 2 b sin(40 degrees) by the law of cosines
    sequences = chains.encode("TTTTT")[None]
    bend = torch.deg2rad(torch.tensor(chains.BEND_DEG, dtype=torch.float64))[sequences[:, 1:-1]]
    twist = torch.deg2rad(torch.tensor(chains.TORSION_DEG, dtype=torch.float64))[sequences[:, 1:-2]]
    points = chains.chain_coordinates(bend, twist)
    assert torch.dist(points[0, 0], points[0, 2]).item() == pytest.approx(2 * B * math.sin(math.radians(40)))


def test_generator_is_seeded_and_its_distances_are_those_of_its_geometry() -> None:
    sequences, coordinates, distances = chains.make_chains(16, 20, seed=5)
    again = chains.make_chains(16, 20, seed=5)
    assert all(torch.equal(x, y) for x, y in zip((sequences, coordinates, distances), again))
    assert not torch.equal(chains.make_chains(16, 20, seed=6)[0], sequences)
    assert sequences.shape == (16, 20) and coordinates.shape == (16, 20, 3) and distances.shape == (16, 20, 20)
    torch.testing.assert_close(distances, torch.cdist(coordinates.double(), coordinates.double()).float())
    torch.testing.assert_close(distances.diagonal(offset=1, dim1=1, dim2=2), torch.full((16, 19), B))
    bend, torsion = angles(coordinates.double())  # the local geometry is the residue type's
    torch.testing.assert_close(bend, torch.tensor(chains.BEND_DEG, dtype=torch.float64)[sequences[:, 1:-1]], atol=1e-3, rtol=0)
    wrapped = (torsion - torch.tensor(chains.TORSION_DEG, dtype=torch.float64)[sequences[:, 1:-2]] + 180) % 360 - 180
    assert wrapped.abs().max().item() < 1e-3
    runs = (sequences[:, 1:] != sequences[:, :-1]).sum(1)  # runs of 3-8 equal types
    assert bool((runs <= 20 // 3).all()) and chains.encode("HETC").tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match=r"unknown residue letters \['X'\]"):
        chains.encode("HXE")


def test_baseline_has_no_triangle_ops_and_at_least_the_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    config = app.PairDemoConfig(c_s=16, c_z=16, triangle_dim=16, pair_head_dim=4, single_head_dim=4, outer_dim=4)
    model, baseline = app.PairDistanceModel(config), app.PairDistanceModel(app.matched_baseline(config))
    assert app.has_triangle_ops(model) and not app.has_triangle_ops(baseline)
    assert app.count_parameters(baseline) >= app.count_parameters(model)

    def refuse(*args, **kwargs):
        raise AssertionError("a triangle operator ran")

    monkeypatch.setattr(TriangleMultiplication, "forward", refuse)
    monkeypatch.setattr(TriangleAttention, "forward", refuse)
    sequences, _, distances = chains.make_chains(2, 9, seed=1)
    out = baseline(sequences, distances)
    assert out.distances.shape == (2, 9, 9) and out.loss.item() > 0
    assert torch.allclose(out.distances, out.distances.transpose(1, 2)) and bool((out.distances.diagonal(dim1=1, dim2=2) == 0).all())
    with pytest.raises(AssertionError, match="a triangle operator ran"):
        model(sequences)


def test_the_triangle_block_is_the_pairformer_block_after_the_outer_product() -> None:
    config = app.PairDemoConfig(c_s=16, c_z=8, triangle_dim=8, pair_heads=2, pair_head_dim=4, single_heads=2,
                                single_head_dim=4, pair_factor=2, single_factor=2)
    block = app.PairBlock(config)
    reference = PairformerBlock(16, 8, single_heads=2, single_head_dim=4, pair_heads=2, pair_head_dim=4, triangle_dim=8,
                                transition_factor=2)
    reference.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("outer.")})
    torch.nn.init.zeros_(block.outer.out.weight)
    torch.nn.init.zeros_(block.outer.out.bias)  # the outer-product update now adds nothing
    s, z = torch.randn(2, 5, 16), torch.randn(2, 5, 5, 8)
    with torch.no_grad():
        for got, want in zip(block(s, z), reference(s, z)):
            torch.testing.assert_close(got, want)


def test_tiny_run_trains_both_models_and_writes_the_figure_and_metrics(run: Path) -> None:
    for name in app.MODELS:
        with open(run / name / "log.csv", newline="") as handle:
            losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
        assert losses[-1] < 0.8 * losses[0], (name, losses)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["format"] == "fmblocks-pair-demo-metrics" and metrics["chain"] == 3
    models = metrics["models"]
    assert set(models) == {"triangle", "baseline", "offset_mean"}
    assert models["triangle"]["triangles"] and not models["baseline"]["triangles"]
    assert models["baseline"]["parameters"] >= models["triangle"]["parameters"]
    for row in models.values():
        assert 0 < row["mae"] < 10 and 0 <= row["lddt"] <= 1 and 0 <= row["contact_precision"] <= 1
    assert (run / "pair-distances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "triangle" / "checkpoint" / "model.safetensors").is_file()


def test_eval_command_reloads_and_a_finished_run_is_not_retrained(run: Path, capsys: pytest.CaptureFixture) -> None:
    before = json.loads((run / "metrics.json").read_text())["models"]
    state = (run / "baseline" / "checkpoint" / "trainer_state.json").read_text()
    assert cli.main(["pair-demo", "eval", "--out", str(run)]) == 0
    assert "triangle: MAE" in capsys.readouterr().out
    after = json.loads((run / "metrics.json").read_text())["models"]
    assert after["triangle"]["mae"] == pytest.approx(before["triangle"]["mae"])  # the same weights, the same chains
    seconds = app.read_run(run)["models"]["baseline"]["train_seconds"]
    app.train(run, preset_name="tiny", progress=False)
    assert (run / "baseline" / "checkpoint" / "trainer_state.json").read_text() == state
    assert app.read_run(run)["models"]["baseline"]["train_seconds"] >= seconds > 0  # kept, not reset


def test_metrics_of_a_perfect_and_a_shifted_prediction() -> None:
    _, _, distances = chains.make_chains(4, 16, seed=2)
    perfect = app.distance_metrics(distances, distances)
    assert perfect["mae"] == 0 and perfect["lddt"] == 1
    shifted = app.distance_metrics(distances + 3.0 * (1 - torch.eye(16)), distances)
    assert shifted["mae"] == pytest.approx(3.0) and shifted["lddt"] == pytest.approx(0.25)  # within 4 A only


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "--out", "{tmp}/none"], "not a pair-demo run directory"),
    (["train", "--out", "{tmp}/t", "--preset", "huge"], "unknown pair-demo preset 'huge'; known: tiny, default"),
    (["train", "--out", "{tmp}/t", "--steps", "0"], "--steps must be >= 1"),
    (["train", "--out", "{tmp}/t", "--preset", "tiny", "--chain", "99"], "--chain must be < 32"),
    (["eval", "--out", "{tmp}/t", "--threads", "0"], "--threads must be >= 1"),
])
def test_bad_input_gives_one_line_errors(argv, message, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["pair-demo", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fmblocks pair-demo: error: ") and message in err, err
    assert not (tmp_path / "t").exists()
