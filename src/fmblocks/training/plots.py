"""The run's log as people read it: `log.csv` (one row per logged step) and `loss.png` (loss curves)."""

import csv
import io
from pathlib import Path
from typing import Any

from fmblocks.files import write_bytes

COLUMNS = ["step", "lr", "train_loss", "eval_loss", "grad_norm", "tokens_per_s"]


def write_csv(history: list[dict[str, Any]], path: str | Path) -> None:
    """Atomically write the history rows as CSV with `COLUMNS` (empty cell = not measured at that step)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in COLUMNS})
    write_bytes(path, text.getvalue().encode("utf-8"))


def plot_losses(history: list[dict[str, Any]], path: str | Path) -> None:
    """Atomically write a PNG of train loss (line) and eval loss (markers) against the step."""
    from matplotlib.figure import Figure  # Agg canvas; no pyplot global state

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
        points = [(row["step"], row[key]) for row in history if row.get(key) is not None]
        if points:
            steps, losses = zip(*points)
            axes.plot(steps, losses, style, label=key.replace("_", " "), markersize=3)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (the model's .loss: cross-entropy in nats for language models)")
    axes.grid(alpha=0.3)
    if history:
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
