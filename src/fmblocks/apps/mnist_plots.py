"""Pictures of the autoregressive MNIST demo (PNG, matplotlib Agg).

plot_samples:    a grid of generated digits, one row per requested class (rows 0..9 top to bottom).
plot_unrolling:  how one digit becomes the model's sequence: the binarised image with its 2x2 blocks,
                 the 14 x 14 grid of patch symbols (ids printed), and the 197-token strip
                 [class token, s_1 .. s_196] read row by row, drawn as each symbol's 2x2 pattern
                 and as its id's colour.
write_sample_pictures: both, for a trained run directory.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fmblocks.apps.mnist_ar import (  # noqa: E402
    N_PATCHES, N_SYMBOLS, TOKENIZER, encode_digits, load_decoder, read_run, run_preset,
)
from fmblocks.apps.mnist_sample import sample_digits  # noqa: E402
from fmblocks.data.mnist import N_CLASSES, load_mnist  # noqa: E402
from fmblocks.errors import ConfigError, ShapeError  # noqa: E402
from fmblocks.files import atomic_writer  # noqa: E402

GRID = 14  # symbols per row and per column


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_samples(images: torch.Tensor, path: str | Path, *, n_rows: int = 10, title: str = "") -> Path:
    """Digits (n_rows * n, 28, 28), grouped by row (class 0's first), as an n_rows x n grid PNG."""
    if images.ndim != 3 or len(images) % n_rows:
        raise ShapeError(f"expected (rows * n, 28, 28) images with {n_rows} rows, got {tuple(images.shape)}")
    n_cols, size = len(images) // n_rows, images.shape[-1]
    padded = torch.nn.functional.pad(images.float(), (1, 1, 1, 1), value=0.35)  # (N, 30, 30) with a grey frame
    mosaic = padded.reshape(n_rows, n_cols, size + 2, size + 2).permute(0, 2, 1, 3)  # (R, C, h, w) -> (R, h, C, w)
    mosaic = mosaic.reshape(n_rows * (size + 2), n_cols * (size + 2))  # (R*h, C*w)
    figure, axes = plt.subplots(figsize=(0.45 * n_cols + 0.6, 0.45 * n_rows + 0.4))
    axes.imshow(mosaic.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_yticks([(size + 2) * (r + 0.5) for r in range(n_rows)], [str(r) for r in range(n_rows)])
    axes.set_xticks([])
    axes.set_ylabel("requested class")
    if title:
        axes.set_title(title, fontsize=9)
    return _save(figure, path)


def plot_unrolling(image: torch.Tensor, label: int, path: str | Path) -> Path:
    """One digit (28, 28) of class `label`: image -> 14 x 14 symbol grid -> 197-token sequence strip."""
    sequence = encode_digits(image[None], torch.tensor([label]))[0]  # (197,)
    symbols = sequence[1:].reshape(GRID, GRID)  # (196,) -> (14, 14) raster order
    binary = TOKENIZER.decode(sequence[1:]).numpy()  # (28, 28) in {0, 1}
    colours = plt.get_cmap("tab20", N_SYMBOLS)

    figure = plt.figure(figsize=(14, 7.2))
    top = figure.add_gridspec(2, 2, height_ratios=[4.2, 1.4], hspace=0.35, wspace=0.05)
    ax_image, ax_grid = figure.add_subplot(top[0, 0]), figure.add_subplot(top[0, 1])
    strip = top[1, :].subgridspec(2, 1, hspace=0.05)
    ax_glyphs, ax_ids = figure.add_subplot(strip[0]), figure.add_subplot(strip[1])

    ax_image.imshow(binary, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    for edge in np.arange(-0.5, 28, 2):
        ax_image.axhline(edge, color="tab:blue", lw=0.3)
        ax_image.axvline(edge, color="tab:blue", lw=0.3)
    ax_image.set_title(f"binarised digit, class {label}: 14 x 14 blocks of 2 x 2 pixels", fontsize=10)
    ax_image.set_axis_off()

    ax_grid.imshow(symbols.numpy(), cmap=colours, vmin=-0.5, vmax=N_SYMBOLS - 0.5, interpolation="nearest")
    for (row, col), value in np.ndenumerate(symbols.numpy()):
        ax_grid.text(col, row, str(value), ha="center", va="center", fontsize=7)
    ax_grid.set_title("patch symbols: [[a, b], [c, d]] -> 8a + 4b + 2c + d", fontsize=10)
    ax_grid.set_axis_off()

    glyphs = np.zeros((2, 3 * (N_PATCHES + 1)))  # each token: 2 x 2 pixels then a white 1-pixel gap
    bits = (sequence[1:, None] >> torch.tensor([3, 2, 1, 0])) & 1  # (196,) -> (196, 4) bits a, b, c, d
    for t, (a, b, c, d) in enumerate(bits.tolist(), start=1):
        glyphs[:, 3 * t : 3 * t + 2] = 0.15 + 0.85 * np.array([[a, b], [c, d]])  # off pixels light grey
    glyphs[:, 0:2] = 0.5  # the class token has no pixels
    ax_glyphs.imshow(glyphs, cmap="gray_r", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax_glyphs.set_axis_off()
    ax_glyphs.set_title(f"the sequence: <class {label}> then 196 symbols, grid row by row "
                        "(top: each symbol's 2x2 pattern, bottom: its id's colour)", fontsize=10)

    ids = np.ma.masked_less(np.concatenate([[-1], sequence[1:].numpy()])[None], 0)  # (1, 197); class token masked
    ax_ids.imshow(ids, cmap=colours, vmin=-0.5, vmax=N_SYMBOLS - 0.5, aspect="auto", interpolation="nearest")
    ax_ids.text(0, 0, f"<{label}>", ha="center", va="center", fontsize=8, color="tab:red", weight="bold")
    ax_ids.set_xticks([1 + GRID * r for r in range(GRID)], [f"row {r + 1}" for r in range(GRID)], fontsize=7)
    ax_ids.set_yticks([])
    return _save(figure, path)


def write_sample_pictures(
    out_dir: str | Path,
    *,
    per_class: int = 10,
    guidance: float | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> tuple[Path, Path]:
    """samples.png (per_class samples of each class 0..9 from the run's decoder) and unrolling.png (a test digit).

    guidance and top_p None take the run preset's.
    """
    if per_class < 1:
        raise ConfigError(f"samples per class must be >= 1, got {per_class}")
    out_dir = Path(out_dir)
    run = read_run(out_dir)
    defaults = run_preset(run["preset"])
    guidance = guidance if guidance is not None else defaults.guidance
    top_p = top_p if top_p is not None else defaults.top_p
    requested = torch.arange(N_CLASSES).repeat_interleave(per_class)  # (10 * per_class,)
    samples = sample_digits(load_decoder(out_dir), requested, guidance=guidance, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed)
    options = [f"guidance {guidance:g}", f"temperature {temperature:g}"]
    options += [f"{name} {value:g}" for name, value in (("top-k", top_k), ("top-p", top_p)) if value is not None]
    title = f"samples ({', '.join(options)}, seed {seed})"
    _, test = load_mnist(data_dir if data_dir is not None else run["data_dir"])
    return (plot_samples(samples, out_dir / "samples.png", title=title),
            plot_unrolling(test.images[0], int(test.labels[0]), out_dir / "unrolling.png"))
