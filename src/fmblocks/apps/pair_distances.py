"""Pair-representation demo: predict the distance map of synthetic 3-D chains from their sequence, with a small
Pairformer (fmblocks.blocks.pair), against the same model without its triangle operators.

Data (`make_chains`, in fmblocks.apps.pair_chains): sequences over four residue types, written as runs of 3-8 equal letters (like helices and
strands); each type fixes the local geometry of a C-alpha-like chain of bonds 3.8 A long:

    type        H (helix)   E (strand)   T (turn)   C (coil)
    bend (deg)     91          123          80        105       angle at residue i between bonds i-1 -> i -> i+1
    torsion (deg)  50         -170         -90        140       dihedral of i-1, i, i+1, i+2 (about bond i -> i+1)

and `chain_coordinates` places the residues one after another (natural extension reference frame). The distance
of far residues is thus a composition of many local steps, and obeys the triangle inequality: the reasoning the
triangle updates are for (d_ij is bounded by d_ik + d_kj for every k).

Model (`PairDistanceModel`), with s (B, N, c_s) single and z (B, N, N, c_z) pair:

    s = Embedding(sequence);   z_ij = Linear(s_i) + Linear(s_j) + RelPos(clip(j - i, -R, R))
    per block:  z += OuterProductMean(s)           AF2 Alg 10 with one sequence: the single -> pair path
                z += TriangleMultiplication{Outgoing, Incoming}(z), TriangleAttention{Starting, Ending}Node(z)
                z += Transition(z);  s += AttentionPairBias(s, z);  s += Transition(s)     (AF3 Alg 17)
    d_ij = 10 A * softplus(Linear(LayerNorm((z_ij + z_ji) / 2))),  d_ii = 0;   loss = mean |d - d_true| (A)

The baseline (`triangles=False`, built by `matched_baseline`) is the same model without the four triangle
operators, with a wider pair transition so that it has at least as many parameters. Metrics (`distance_metrics`)
over the held-out chains' pairs i != j: MAE (A), MAE of pairs |i - j| >= 12, an lDDT-like score (pairs closer
than 15 A, fraction within 0.5/1/2/4 A, averaged) and long-range contact precision (|i - j| >= 6: the L pairs
predicted closest, fraction truly < 8 A); `offset_mean` is the error of predicting each |i - j|'s mean distance.

Runs are directories: triangle/ and baseline/ (the trainer's checkpoint/, log.csv, loss.png), run.json;
`evaluate` adds metrics.json and pair-distances.png. Presets are data (`RUN_PRESETS`). Limits: fixed-length chains
(no residue mask), C-alpha-like points only, no clash avoidance; regression head, not AlphaFold's distogram.
"""

import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.apps.pair_chains import RESIDUES, make_chains
from fmblocks.blocks.pair import (
    AttentionPairBias, OuterProductMean, TriangleAttention, TriangleAttentionEndingNode, TriangleAttentionStartingNode,
    TriangleMultiplication, TriangleMultiplicationIncoming, TriangleMultiplicationOutgoing, Transition,
)
from fmblocks.configs import check_fields, config_from_dict
from fmblocks.errors import ConfigError, DataError, UnknownNameError
from fmblocks.files import read_json, write_bytes, write_json
from fmblocks.training import DictDataset, TrainConfig, Trainer, load_weights
from fmblocks.training.checkpoint import CONFIG_FILE, CHECKPOINT_DIR, resolve_checkpoint
from fmblocks.training.lock import run_lock

MODELS = ("triangle", "baseline")
CONFIG_FORMAT, RUN_FORMAT, METRICS_FORMAT = "fmblocks-pair-demo-config", "fmblocks-pair-demo-run", "fmblocks-pair-demo-metrics"


# ---- model ----------------------------------------------------------------------------------------------
@dataclass
class PairDemoConfig:
    """Sizes of the model; `triangles=False` is the baseline without triangle operators."""

    c_s: int = 32
    c_z: int = 32
    n_blocks: int = 2
    max_offset: int = 32
    pair_heads: int = 4
    pair_head_dim: int = 8
    triangle_dim: int = 32
    single_heads: int = 4
    single_head_dim: int = 8
    outer_dim: int = 8
    pair_factor: int = 2
    single_factor: int = 2
    triangles: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in (int, "int") and value < 1:
                raise ConfigError(f"PairDemoConfig.{field.name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairDemoConfig":
        return config_from_dict(cls, {k: v for k, v in data.items() if k not in ("format", "version")})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), fmt=CONFIG_FORMAT)

    @classmethod
    def load(cls, path: str | Path) -> "PairDemoConfig":
        return cls.from_dict(read_json(path, fmt=CONFIG_FORMAT))


class PairBlock(nn.Module):
    """Outer-product update, then AF3 Alg 17 (triangle operators only if `triangles`); (s, z) -> (s, z)."""

    def __init__(self, config: PairDemoConfig) -> None:
        super().__init__()
        c_s, c_z, c = config.c_s, config.c_z, config
        self.outer = OuterProductMean(c_s, c_z, c.outer_dim)
        self.triangles = config.triangles
        if config.triangles:  # the same attribute names as PairformerBlock
            self.triangle_out = TriangleMultiplicationOutgoing(c_z, c.triangle_dim, bias=False)
            self.triangle_in = TriangleMultiplicationIncoming(c_z, c.triangle_dim, bias=False)
            self.triangle_start = TriangleAttentionStartingNode(c_z, c.pair_head_dim, c.pair_heads, bias=False)
            self.triangle_end = TriangleAttentionEndingNode(c_z, c.pair_head_dim, c.pair_heads, bias=False)
        self.pair_transition = Transition(c_z, c.pair_factor, kind="swiglu")
        self.single_attention = AttentionPairBias(c_s, c_z, c.single_head_dim, c.single_heads)
        self.single_transition = Transition(c_s, c.single_factor, kind="swiglu")

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z + self.outer(s[:, None])  # (B, 1, N, c_s): the single representation as a one-sequence MSA
        if self.triangles:
            z = z + self.triangle_out(z)
            z = z + self.triangle_in(z)
            z = z + self.triangle_start(z)
            z = z + self.triangle_end(z)
        z = z + self.pair_transition(z)
        s = s + self.single_attention(s, z)
        return s + self.single_transition(s), z


@dataclass
class PairDistanceOutput:
    distances: torch.Tensor  # (B, N, N) predicted, A
    loss: torch.Tensor | None = None  # mean |predicted - true| over pairs i != j, A


class PairDistanceModel(nn.Module):
    """sequence (B, N) residue types -> distance map (B, N, N) in A; see the module docstring."""

    def __init__(self, config: PairDemoConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(len(RESIDUES), config.c_s)
        self.left, self.right = nn.Linear(config.c_s, config.c_z), nn.Linear(config.c_s, config.c_z, bias=False)
        self.offset = nn.Embedding(2 * config.max_offset + 1, config.c_z)
        self.blocks = nn.ModuleList(PairBlock(config) for _ in range(config.n_blocks))
        self.norm = nn.LayerNorm(config.c_z)
        self.head = nn.Linear(config.c_z, 1)

    def forward(self, sequence: torch.Tensor, distances: torch.Tensor | None = None) -> PairDistanceOutput:
        if sequence.dim() != 2 or sequence.dtype != torch.long:
            raise DataError(f"sequence must be (B, N) residue types (long), got {tuple(sequence.shape)} {sequence.dtype}")
        n, r = sequence.shape[1], self.config.max_offset
        s = self.embed(sequence)  # (B, N, c_s)
        position = torch.arange(n, device=sequence.device)
        offset = (position[None, :] - position[:, None]).clamp(-r, r) + r  # (N, N): j - i, clipped
        z = self.left(s)[:, :, None] + self.right(s)[:, None, :] + self.offset(offset)  # (B, N, N, c_z)
        for block in self.blocks:
            s, z = block(s, z)
        z = (z + z.transpose(1, 2)) / 2  # a distance map is symmetric
        off_diagonal = 1.0 - torch.eye(n, device=z.device)
        predicted = 10.0 * F.softplus(self.head(self.norm(z)).squeeze(-1)) * off_diagonal  # (B, N, N)
        if distances is None:
            return PairDistanceOutput(predicted)
        loss = ((predicted - distances).abs() * off_diagonal).sum() / (off_diagonal.sum() * len(sequence))
        return PairDistanceOutput(predicted, loss)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def has_triangle_ops(model: nn.Module) -> bool:
    return any(isinstance(m, (TriangleMultiplication, TriangleAttention)) for m in model.modules())


def matched_baseline(config: PairDemoConfig) -> PairDemoConfig:
    """config without triangle operators, with the narrowest pair transition giving at least as many parameters."""
    target = count_parameters(PairDistanceModel(config))
    for factor in range(config.pair_factor, 64 * config.pair_factor):
        baseline = dataclasses.replace(config, triangles=False, pair_factor=factor)
        if count_parameters(PairDistanceModel(baseline)) >= target:
            return baseline
    raise ConfigError(f"no pair transition up to factor {64 * config.pair_factor} matches {target} parameters")


# ---- metrics --------------------------------------------------------------------------------------------
def distance_metrics(predicted: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """MAE, long-range MAE, lDDT-like score and top-L long-range contact precision of maps (B, N, N)."""
    n = true.shape[-1]
    position = torch.arange(n)
    separation = (position[None, :] - position[:, None]).abs().expand_as(true)  # (B, N, N)
    error = (predicted - true).abs()
    pairs, far = separation > 0, separation >= 12
    local = pairs & (true < 15.0)
    lddt = torch.stack([(error[local] < t).double().mean() for t in (0.5, 1.0, 2.0, 4.0)]).mean()
    candidates = (predicted + torch.where(separation >= 6, 0.0, math.inf)).flatten(1)  # (B, N*N)
    closest = candidates.topk(n, dim=1, largest=False).indices  # the L pairs predicted closest, per chain
    precision = (true.flatten(1).gather(1, closest) < 8.0).double().mean()
    return {"mae": error[pairs].mean().item(), "mae_long_range": error[far].mean().item() if far.any() else math.nan,
            "lddt": lddt.item(), "contact_precision": precision.item()}


def offset_mean(train_distances: torch.Tensor, n: int) -> torch.Tensor:
    """(N, N): the training set's mean distance at each |i - j|, the prediction of a model that ignores sequence."""
    position = torch.arange(n)
    separation = (position[None, :] - position[:, None]).abs()
    means = torch.stack([train_distances[:, separation == k].mean() for k in range(n)])  # (N,)
    return means[separation]


# ---- runs -----------------------------------------------------------------------------------------------
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(model=dict(c_s=16, c_z=16, n_blocks=1, triangle_dim=16, pair_head_dim=4, single_head_dim=4,
                            outer_dim=4, pair_heads=2, single_heads=2),
                 train=dict(steps=60, batch_size=8, lr=3e-3, warmup_steps=5, weight_decay=0.01, eval_every=30,
                            eval_batches=2, log_every=5),
                 length=12, n_train=256, n_test=32),
    "default": dict(model=dict(),
                    train=dict(steps=1500, batch_size=8, lr=2e-3, warmup_steps=50, weight_decay=0.01,
                               eval_every=250, eval_batches=8, log_every=25, checkpoint_every=500),
                    length=24, n_train=8000, n_test=128),
}


def train(out_dir: str | Path, *, preset_name: str = "default", steps: int | None = None, seed: int = 0,
          progress: bool = True) -> Path:
    """Train the triangle model and its matched baseline into out_dir/triangle and out_dir/baseline (resuming)."""
    if preset_name not in RUN_PRESETS:
        raise UnknownNameError(f"unknown pair-demo preset {preset_name!r}; known: {', '.join(RUN_PRESETS)}")
    run = RUN_PRESETS[preset_name]
    train_config = TrainConfig(**{**run["train"], "seed": seed, "progress": progress, "device": "cpu",
                                  **({"steps": steps} if steps is not None else {})})
    config = PairDemoConfig(**run["model"])
    configs = {"triangle": config, "baseline": matched_baseline(config)}
    sequences, _, distances = make_chains(run["n_train"], run["length"], seed=seed)
    test_sequences, _, test_distances = make_chains(run["n_test"], run["length"], seed=seed + 1)
    out_dir = Path(out_dir)
    record: dict[str, Any] = {"preset": preset_name, "steps": train_config.steps, "seed": seed,
                              "length": run["length"], "n_train": run["n_train"], "n_test": run["n_test"], "models": {}}
    with run_lock(out_dir):
        earlier = read_json(out_dir / "run.json", fmt=RUN_FORMAT)["models"] if (out_dir / "run.json").is_file() else {}
        for name, model_config in configs.items():
            torch.manual_seed(seed)  # the initial weights
            model = PairDistanceModel(model_config)
            trainer = Trainer(model, DictDataset(sequence=sequences, distances=distances), config=train_config,
                              eval_data=DictDataset(sequence=test_sequences, distances=test_distances),
                              model_config=model_config, out_dir=out_dir / name)
            if (out_dir / name / CHECKPOINT_DIR).exists():
                trainer.resume()
            started, resumed = time.perf_counter(), trainer.step > 0
            if trainer.step < train_config.steps:
                trainer.fit()
            seconds = time.perf_counter() - started + (earlier.get(name, {}).get("train_seconds", 0.0) if resumed else 0.0)
            record["models"][name] = {"parameters": count_parameters(model), "triangles": model_config.triangles,
                                      "train_seconds": round(seconds, 1)}  # over all sessions of a resumed run
            write_json(out_dir / "run.json", record, fmt=RUN_FORMAT)
    return out_dir


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """run.json of a run directory; DataError when out_dir holds no finished pair-demo run."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        raise DataError(f"{out_dir}: not a pair-demo run directory (no run.json); "
                        f"run `fmblocks pair-demo train --out {out_dir}` first")
    record = {k: v for k, v in read_json(path, fmt=RUN_FORMAT).items() if k not in ("format", "version")}
    missing = [name for name in MODELS if name not in record["models"]]
    if missing:
        raise DataError(f"{out_dir}: the run is unfinished (no {', '.join(missing)} model); rerun `fmblocks pair-demo train`")
    return record


def load_model(directory: str | Path) -> PairDistanceModel:
    """The trained model of a model run (or checkpoint) directory, in eval mode on the CPU."""
    checkpoint = resolve_checkpoint(directory)
    model = PairDistanceModel(PairDemoConfig.load(checkpoint / CONFIG_FILE))
    load_weights(model, checkpoint)
    return model.eval()


def read_losses(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) of train_loss and eval_loss from a model run's log.csv."""
    with open(directory / "log.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [(int(r["step"]), float(r[key])) for r in rows if r[key]] for key in ("train_loss", "eval_loss")}


def plot_run(true: torch.Tensor, predicted: dict[str, torch.Tensor], losses: dict[str, dict], metrics: dict[str, dict],
             path: str | Path, *, title: str) -> Path:
    """PNG: true and predicted distance maps of one chain (top), loss curves and |error| maps (bottom)."""
    from matplotlib.figure import Figure  # Agg canvas; no pyplot global state

    figure = Figure(figsize=(13, 8.4), dpi=100)
    axes = figure.subplots(2, 3)
    vmax = max(float(true.max()), *(float(d.max()) for d in predicted.values()))
    panels = [("true distances (A)", true)] + [(f"{name}: MAE {metrics[name]['mae']:.2f} A on this chain", d)
                                                 for name, d in predicted.items()]
    for ax, (label, image) in zip(axes[0], panels):
        shown = ax.imshow(image.numpy(), cmap="viridis_r", vmin=0, vmax=vmax)
        ax.set_title(label, fontsize=10)
        figure.colorbar(shown, ax=ax, fraction=0.046)
    for name, colour in zip(predicted, ("tab:blue", "tab:orange")):
        for key, style in (("train_loss", "-"), ("eval_loss", "o--")):
            points = losses[name][key]
            axes[1, 0].plot([p[0] for p in points], [p[1] for p in points], style, color=colour, ms=3,
                            label=f"{name} {key.split('_')[0]}")
    axes[1, 0].set(xlabel="step", ylabel="MAE (A)", yscale="log", title="loss (mean |d - d_true|)")
    axes[1, 0].legend(fontsize=8)
    axes[1, 0].grid(alpha=0.3)
    for ax, (name, image) in zip(axes[1, 1:], predicted.items()):
        shown = ax.imshow((image - true).abs().numpy(), cmap="magma", vmin=0, vmax=max(2.0, vmax / 6))
        ax.set_title(f"{name}: |predicted - true| (A)", fontsize=10)
        figure.colorbar(shown, ax=ax, fraction=0.046)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
    return Path(path)


def evaluate(out_dir: str | Path, *, chain: int | None = None) -> dict[str, Any]:
    """Held-out metrics of both models and the offset-mean reference: metrics.json and pair-distances.png.

    The figure shows held-out chain `chain`; by default the typical one, whose MAE (the mean of both models')
    is the median of the held-out chains'."""
    out_dir = Path(out_dir)
    record = read_run(out_dir)
    if chain is not None and not 0 <= chain < record["n_test"]:
        raise DataError(f"chain must lie in 0..{record['n_test'] - 1} (the held-out chains), got {chain}")
    _, _, train_distances = make_chains(record["n_train"], record["length"], seed=record["seed"])
    sequences, _, distances = make_chains(record["n_test"], record["length"], seed=record["seed"] + 1)
    with run_lock(out_dir):
        predicted: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name in MODELS:
                predicted[name] = load_model(out_dir / name)(sequences).distances
        reference = offset_mean(train_distances, record["length"]).expand_as(distances)
        metrics: dict[str, Any] = {name: {**distance_metrics(p, distances), **record["models"][name]}
                                   for name, p in predicted.items()}
        metrics["offset_mean"] = distance_metrics(reference, distances)
        if chain is None:
            per_chain = sum((p - distances).abs().mean(dim=(1, 2)) for p in predicted.values())  # (n_test,)
            chain = int(per_chain.argsort()[len(per_chain) // 2])
        one = {name: distance_metrics(p[chain:chain + 1], distances[chain:chain + 1]) for name, p in predicted.items()}
        text = "".join(RESIDUES[i] for i in sequences[chain])
        title = (f"held-out chain {chain}: {text}\nheld-out MAE over {record['n_test']} chains: "
                 + ", ".join(f"{name} {metrics[name]['mae']:.2f} A" for name in (*MODELS, "offset_mean")))
        plot_run(distances[chain], {name: p[chain] for name, p in predicted.items()},
                 {name: read_losses(out_dir / name) for name in MODELS}, one, out_dir / "pair-distances.png", title=title)
        document = {"preset": record["preset"], "steps": record["steps"], "seed": record["seed"],
                    "length": record["length"], "n_test": record["n_test"], "chain": chain, "models": metrics}
        write_json(out_dir / "metrics.json", document, fmt=METRICS_FORMAT)
    return document
