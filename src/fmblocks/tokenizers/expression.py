"""Single-cell gene expression as tokens: rank-value encoding (Geneformer) and value binning (scGPT).

A cell is a vector of non-negative counts over a fixed gene list (one row of a cells x genes matrix).
Both tokenizers share one vocabulary: the specials <pad> <cls> <eos> <mask>, then one id per gene.

Rank-value encoding (Theodoris et al., 2023, Geneformer). With c_g the cell's counts, total = Σ c_g,
and m_g the median of gene g's non-zero normalised values over a training corpus (`fit`):

    v_g = (c_g / total · target_sum) / m_g        -> ids of the genes with c_g > 0, by v_g descending
                                                     (ties: gene order), at most max_len tokens
    decode -> the genes in rank order. Lost: every count, the gap between ranks, the zero genes,
              genes cut by max_len. Genes never expressed in the corpus get m_g = 1.

Value binning (Cui et al., 2024, scGPT). Per cell, the edges are the quantiles of its non-zero counts
at n_bins - 1 evenly spaced levels in [0, 1]; a non-zero count gets bin Σ_j [edge_j <= c]
(= numpy.digitize, in 1..n_bins-1), a zero count bin 0:

    encode -> ExpressionTokens(genes=[gene ids], values=[bins]) for the non-zero genes in gene order
              (all genes with include_zeros=True)
    decode -> the genes and their bins. Lost: counts (only the level within this cell survives; the
              cell's edges are not kept), order within a bin, zero genes (unless included).
              scGPT breaks ties with an edge at random; here they take the upper bin.

Matrices come from CSV/TSV files (`read_expression`) with a header of gene names, or from .h5ad when
the optional `anndata` package is importable. Negative, NaN or infinite counts raise DataError.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmblocks.errors import ConfigError, DataError, ShapeError, TokenizerError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_ids

SPECIALS = ("<pad>", "<cls>", "<eos>", "<mask>")


def _check_counts(counts: torch.Tensor, genes: list[str], cells: list[str] | None = None) -> None:
    """DataError naming the first count that is negative, NaN or infinite (cells: row names of a matrix)."""
    bad = ~torch.isfinite(counts) | (counts < 0)
    if bad.any():
        *row, column = (int(i) for i in torch.nonzero(bad)[0])
        where = f"cell {cells[row[0]]!r}, " if row and cells is not None else ""
        value = float(counts[(*row, column)])
        raise DataError(f"count {value} for {where}gene {genes[column]!r}; counts must be finite and >= 0")


@dataclass(frozen=True)
class ExpressionMatrix:
    """Counts (cells, genes) float64 >= 0, with gene names (columns) and cell names (rows)."""

    counts: torch.Tensor
    genes: list[str]
    cells: list[str]

    def __post_init__(self) -> None:
        if self.counts.ndim != 2 or self.counts.shape != (len(self.cells), len(self.genes)):
            raise ShapeError(f"counts {tuple(self.counts.shape)} do not match {len(self.cells)} cells x {len(self.genes)} genes")
        if len(set(self.genes)) != len(self.genes):
            raise DataError("gene names must be unique")
        _check_counts(self.counts, self.genes, self.cells)


def read_expression(path: str | Path) -> ExpressionMatrix:
    """A cells x genes matrix from CSV (.tsv: tab-separated) with a header row of gene names, or from .h5ad.

    The first column holds cell names when the header's first field is empty or the first row's first
    field is not a number; otherwise cells are named by their row number.
    """
    path = Path(path)
    if path.suffix == ".h5ad":
        return _read_h5ad(path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ",") if row]
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header of gene names and at least one row of counts")
    header, body = rows[0], rows[1:]
    named = header[0].strip() == "" or not _is_number(body[0][0])
    genes = [g.strip() for g in (header[1:] if named else header)]
    cells, values = [], []
    for line, row in enumerate(body, start=2):
        fields = row[1:] if named else row
        if len(fields) != len(genes):
            raise DataError(f"{path}:{line}: {len(fields)} values for {len(genes)} genes")
        try:
            values.append([float(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not _is_number(v))
            raise DataError(f"{path}:{line}: {bad!r} is not a number") from None
        cells.append(row[0].strip() if named else str(line - 2))
    try:
        return ExpressionMatrix(torch.tensor(values, dtype=torch.float64), genes, cells)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_h5ad(path: Path) -> ExpressionMatrix:
    try:
        import anndata
    except ModuleNotFoundError:
        raise DataError(f"{path}: reading .h5ad needs the optional package anndata (pip install anndata); or export the matrix to CSV") from None
    data = anndata.read_h5ad(path)
    matrix = data.X.toarray() if hasattr(data.X, "toarray") else data.X
    return ExpressionMatrix(torch.as_tensor(matrix, dtype=torch.float64), list(map(str, data.var_names)), list(map(str, data.obs_names)))


@dataclass(frozen=True)
class ExpressionTokens:
    """A binned cell: gene ids and their value bins, position by position (same length)."""

    genes: list[int]
    values: list[int]


@dataclass(frozen=True)
class DecodedCell:
    """What decoding recovers: gene names, a level per gene (a bin, or the rank 0 = highest), and what was lost."""

    genes: list[str]
    levels: list[int]
    lost: str


class _GeneTokenizer(Tokenizer):
    """The shared gene vocabulary: specials, then one id per gene; cells are count vectors over `genes`."""

    lossless = False

    def __init__(self, genes: list[str]) -> None:
        if not genes or len(set(genes)) != len(genes):
            raise ConfigError("genes must be a non-empty list of unique names")
        self.genes = list(genes)
        self.tokens = [*SPECIALS, *self.genes]  # id -> token
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {token: self.ids[token] for token in SPECIALS}

    def _cell(self, counts: Any) -> torch.Tensor:
        cell = torch.as_tensor(counts, dtype=torch.float64)
        if cell.shape != (len(self.genes),):
            raise ShapeError(f"a cell is a vector of {len(self.genes)} counts (one per gene), got shape {tuple(cell.shape)}")
        _check_counts(cell, self.genes)
        return cell

    def _names(self, ids: list[int]) -> list[str]:
        """The gene names of checked ids (`check_ids`); TokenizerError for a special token's id."""
        special = next((i for i in ids if i < len(SPECIALS)), None)
        if special is not None:
            raise TokenizerError(f"id {special} is not a gene id ({len(SPECIALS)}..{len(self.tokens) - 1})")
        return [self.tokens[i] for i in ids]

    def align(self, matrix: ExpressionMatrix) -> torch.Tensor:
        """The matrix's counts in this tokenizer's gene order (cells, G); genes it lacks count as 0."""
        columns = {gene: j for j, gene in enumerate(matrix.genes)}
        if not columns.keys() & set(self.genes):
            raise DataError("the matrix shares no gene with the tokenizer's vocabulary")
        aligned = torch.zeros(len(matrix.cells), len(self.genes), dtype=torch.float64)
        for i, gene in enumerate(self.genes):
            if gene in columns:
                aligned[:, i] = matrix.counts[:, columns[gene]]
        return aligned

    def encode_matrix(self, matrix: ExpressionMatrix) -> list[Any]:
        """Encode every cell of `matrix`, matching genes by name."""
        return [self.encode(row) for row in self.align(matrix)]


@TOKENIZERS.register("expression-rank")
class RankValueTokenizer(_GeneTokenizer):
    """Geneformer rank-value encoding: cell counts (G,) -> gene ids by normalised expression, highest first."""

    kind = "expression-rank"

    def __init__(self, genes: list[str], medians: Any, *, target_sum: float = 10_000.0, max_len: int = 2048) -> None:
        super().__init__(genes)
        self.medians = torch.as_tensor(medians, dtype=torch.float64)
        if self.medians.shape != (len(genes),) or not (self.medians > 0).all():
            raise ConfigError(f"medians must be {len(genes)} positive numbers, one per gene")
        if max_len < 3:
            raise ConfigError(f"max_len must be at least 3 (room for <cls>, a gene, <eos>), got {max_len}")
        self.target_sum, self.max_len = float(target_sum), max_len

    @classmethod
    def fit(cls, matrix: ExpressionMatrix, *, target_sum: float = 10_000.0, max_len: int = 2048) -> "RankValueTokenizer":
        """Per-gene medians of the non-zero normalised values c / total · target_sum over the cells of `matrix`."""
        totals = matrix.counts.sum(dim=1, keepdim=True)  # (cells, 1)
        normalised = matrix.counts / totals.clamp_min(1e-300) * target_sum  # (cells, G)
        masked = torch.where(matrix.counts > 0, normalised, torch.nan)
        medians = torch.nanquantile(masked, 0.5, dim=0)  # (G,), NaN for genes never expressed
        return cls(matrix.genes, torch.nan_to_num(medians, nan=1.0), target_sum=target_sum, max_len=max_len)

    def encode(self, x: Any, *, add_special_tokens: bool = False) -> list[int]:
        """Counts (G,) -> ids of the expressed genes, ranked; `add_special_tokens` frames them as <cls> ... <eos>."""
        cell = self._cell(x)
        total = cell.sum()
        values = cell / total * self.target_sum / self.medians if total > 0 else cell  # (G,)
        expressed = torch.nonzero(cell > 0).flatten()
        order = expressed[torch.argsort(values[expressed], descending=True, stable=True)]
        budget = self.max_len - 2 if add_special_tokens else self.max_len
        ids = (order[:budget] + len(SPECIALS)).tolist()
        return [self.ids["<cls>"], *ids, self.ids["<eos>"]] if add_special_tokens else ids

    def decode(self, ids: Any) -> DecodedCell:
        """Gene ids -> the genes in rank order (levels 0, 1, ...); specials are dropped."""
        genes = self._names([i for i in check_ids(ids, len(self.tokens)) if i >= len(SPECIALS)])
        lost = "all counts and their gaps; genes with zero count; genes beyond max_len; only the order survives"
        return DecodedCell(genes, list(range(len(genes))), lost)

    def to_dict(self) -> dict[str, Any]:
        return {"genes": self.genes, "target_sum": self.target_sum, "max_len": self.max_len}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"medians": self.medians}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "RankValueTokenizer":
        return cls(data["genes"], tensors["medians"], target_sum=data["target_sum"], max_len=data["max_len"])


@TOKENIZERS.register("expression-bins")
class BinnedExpressionTokenizer(_GeneTokenizer):
    """scGPT value binning: cell counts (G,) -> ExpressionTokens(gene ids, per-cell quantile bins)."""

    kind = "expression-bins"

    def __init__(self, genes: list[str], n_bins: int = 51, *, include_zeros: bool = False) -> None:
        super().__init__(genes)
        if not isinstance(n_bins, int) or n_bins < 2:
            raise ConfigError(f"n_bins must be an integer >= 2 (bin 0 is for zeros), got {n_bins!r}")
        self.n_bins, self.include_zeros = n_bins, include_zeros

    def bins(self, x: Any) -> torch.Tensor:
        """Counts (G,) -> bins (G,): 0 for zero counts, 1..n_bins-1 by the cell's non-zero quantiles."""
        cell = self._cell(x)
        bins = torch.zeros(len(cell), dtype=torch.long)
        expressed = cell > 0
        if expressed.any():
            levels = torch.linspace(0, 1, self.n_bins - 1, dtype=torch.float64)
            edges = torch.quantile(cell[expressed], levels)  # (n_bins - 1,)
            bins[expressed] = torch.bucketize(cell[expressed], edges, right=True)  # number of edges <= count
        return bins

    def encode(self, x: Any) -> ExpressionTokens:
        bins = self.bins(x)
        keep = torch.arange(len(bins)) if self.include_zeros else torch.nonzero(bins > 0).flatten()
        return ExpressionTokens((keep + len(SPECIALS)).tolist(), bins[keep].tolist())

    def decode(self, ids: ExpressionTokens) -> DecodedCell:
        """-> the genes and their bins; see the module docstring for what is lost."""
        if len(ids.genes) != len(ids.values):
            raise TokenizerError(f"{len(ids.genes)} gene ids but {len(ids.values)} values")
        try:
            values = check_ids(ids.values, self.n_bins)
        except TokenizerError as err:
            raise TokenizerError(f"value bins must be integers in 0..{self.n_bins - 1}: {err}") from None
        lost = "counts (only the bin, relative to this cell's non-zero quantiles, survives); order within a bin"
        if not self.include_zeros:
            lost += "; genes with zero count"
        return DecodedCell(self._names(check_ids(ids.genes, len(self.tokens))), values, lost)

    def to_dict(self) -> dict[str, Any]:
        return {"genes": self.genes, "n_bins": self.n_bins, "include_zeros": self.include_zeros}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "BinnedExpressionTokenizer":
        return cls(data["genes"], data["n_bins"], include_zeros=data["include_zeros"])

