"""Expression tokens: Geneformer rank values, scGPT bins, CSV reading, bad counts."""

import sys

import numpy as np
import pytest
import torch

from fmblocks.errors import ConfigError, DataError, ShapeError, TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.expression import (
    SPECIALS, BinnedExpressionTokenizer, ExpressionMatrix, ExpressionTokens, RankValueTokenizer, read_expression,
)

GENES = ["g0", "g1", "g2"]
N_SPECIALS = len(SPECIALS)


@pytest.fixture
def matrix() -> ExpressionMatrix:
    return ExpressionMatrix(torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]]), GENES, ["c0", "c1"])


def test_rank_value_hand_worked(matrix: ExpressionMatrix) -> None:
    tok = RankValueTokenizer.fit(matrix, target_sum=1.0)
    # normalised: c0 = (.25, .75, 0), c1 = (.25, .25, .5); non-zero medians per gene: (.25, .5, .5)
    torch.testing.assert_close(tok.medians, torch.tensor([0.25, 0.5, 0.5], dtype=torch.float64))
    # c0 / medians = (1, 1.5, 0) -> g1, g0;   c1 / medians = (1, .5, 1) -> g0, g2 (tie: gene order), g1
    assert tok.encode_matrix(matrix) == [[N_SPECIALS + 1, N_SPECIALS + 0], [N_SPECIALS + 0, N_SPECIALS + 2, N_SPECIALS + 1]]
    decoded = tok.decode(tok.encode(matrix.counts[1], add_special_tokens=True))
    assert decoded.genes == ["g0", "g2", "g1"] and decoded.levels == [0, 1, 2]
    assert "counts" in decoded.lost and "zero" in decoded.lost


def test_rank_value_matches_numpy_formula() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.5, size=(30, 12)).astype(float)
    counts[:, 11] = 0  # never expressed: median 1
    genes = [f"gene{i}" for i in range(12)]
    tok = RankValueTokenizer.fit(ExpressionMatrix(torch.from_numpy(counts), genes, [str(i) for i in range(30)]))
    normalised = counts / counts.sum(1, keepdims=True) * 10_000
    medians = np.array([np.median(col[col > 0]) if (col > 0).any() else 1.0 for col in normalised.T])
    np.testing.assert_allclose(tok.medians.numpy(), medians)
    for cell, values in zip(counts, normalised / medians):
        expressed = np.nonzero(cell)[0]
        expected = expressed[np.argsort(-values[expressed], kind="stable")] + N_SPECIALS
        assert tok.encode(cell) == expected.tolist()


def test_rank_value_max_len_and_empty_cell(matrix: ExpressionMatrix) -> None:
    tok = RankValueTokenizer.fit(matrix, max_len=3)
    assert len(tok.encode([5.0, 1.0, 2.0], add_special_tokens=True)) == 3
    assert len(tok.encode([5.0, 1.0, 2.0])) == 3
    assert tok.encode([0.0, 0.0, 0.0]) == []


def test_binned_hand_worked() -> None:
    tok = BinnedExpressionTokenizer(["a", "b", "c", "d", "e"], n_bins=5)
    # non-zero (1, 2, 3, 4); edges = quantiles at (0, 1/3, 2/3, 1) = (1, 2, 3, 4); bin = number of edges <= count
    tokens = tok.encode([0, 1, 2, 3, 4])
    assert tokens == ExpressionTokens([N_SPECIALS + 1, N_SPECIALS + 2, N_SPECIALS + 3, N_SPECIALS + 4], [1, 2, 3, 4])
    decoded = tok.decode(tokens)
    assert decoded.genes == ["b", "c", "d", "e"] and decoded.levels == [1, 2, 3, 4] and "zero" in decoded.lost
    with_zeros = BinnedExpressionTokenizer(["a", "b", "c", "d", "e"], n_bins=5, include_zeros=True)
    assert with_zeros.encode([0, 10, 10, 0, 1]).values == [0, 4, 4, 0, 1]


def test_binned_matches_numpy_digitize() -> None:
    counts = np.random.default_rng(1).poisson(3.0, size=300).astype(float)
    tok = BinnedExpressionTokenizer([str(i) for i in range(300)], n_bins=51)
    nonzero = counts[counts > 0]
    reference = np.digitize(nonzero, np.quantile(nonzero, np.linspace(0, 1, 50)))  # scGPT's binning, upper ties
    bins = tok.bins(counts)
    assert bins[torch.from_numpy(counts > 0)].tolist() == reference.tolist()
    assert (bins[torch.from_numpy(counts == 0)] == 0).all() and 1 <= int(reference.min()) and int(bins.max()) == 50


def test_csv_with_cell_names_and_save_load(tmp_path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(",g0,g1,g2\ncellA,1,3,0\ncellB,2,2,4\n")
    matrix = read_expression(path)
    assert matrix.genes == GENES and matrix.cells == ["cellA", "cellB"]
    tok = RankValueTokenizer.fit(matrix)
    tok.save(tmp_path / "rank.json")
    again = load(tmp_path / "rank.json")
    assert torch.equal(again.medians, tok.medians) and again.encode_matrix(matrix) == tok.encode_matrix(matrix)
    binned = BinnedExpressionTokenizer(matrix.genes, n_bins=7)
    binned.save(tmp_path / "bins.json")
    assert load(tmp_path / "bins.json").encode([3, 0, 1]) == binned.encode([3, 0, 1])


def test_csv_without_cell_names_and_alignment(tmp_path) -> None:
    path = tmp_path / "cells.tsv"
    path.write_text("g2\tg0\tzz\n4\t2\t9\n")
    matrix = read_expression(path)
    assert matrix.cells == ["0"] and matrix.genes == ["g2", "g0", "zz"]
    tok = BinnedExpressionTokenizer(GENES, n_bins=3)
    assert tok.align(matrix).tolist() == [[2.0, 0.0, 4.0]]  # by name; zz ignored, g1 missing -> 0


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("g0,g1\n1,-2\n", DataError, r"cells.csv: count -2.0 for cell '0', gene 'g1'"),
        ("g0,g1\n1,nan\n", DataError, "finite"),
        ("g0,g1\n1,2,3\n", DataError, ":2: 3 values for 2 genes"),
        ("g0,g1\n1,x\n", DataError, "'x' is not a number"),
        ("g0,g0\n1,2\n", DataError, "unique"),
        ("g0,g1\n", DataError, "at least one row"),
    ],
)
def test_bad_files(tmp_path, text: str, error: type, message: str) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(text)
    with pytest.raises(error, match=message):
        read_expression(path)


def test_h5ad_without_anndata_says_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anndata", None)  # importing it now fails, as when it is not installed
    with pytest.raises(DataError, match="pip install anndata"):
        read_expression(tmp_path / "cells.h5ad")


def test_bad_cells_and_ids(matrix: ExpressionMatrix) -> None:
    rank = RankValueTokenizer.fit(matrix)
    with pytest.raises(DataError, match="count -1.0 for gene 'g1'"):
        rank.encode([1, -1, 0])
    with pytest.raises(ShapeError, match="3 counts"):
        rank.encode([1, 2])
    with pytest.raises(TokenizerError, match="99 at position 0 is outside the vocabulary"):
        rank.decode([99])
    binned = BinnedExpressionTokenizer(GENES)
    with pytest.raises(TokenizerError, match="not a gene id"):
        binned.decode(ExpressionTokens([0, 5], [1, 1]))  # <pad>, a special token
    with pytest.raises(TokenizerError, match="value bins must be integers.*1.5"):
        binned.decode(ExpressionTokens([4, 5], [1, 1.5]))
    with pytest.raises(TokenizerError, match="values"):
        binned.decode(ExpressionTokens([4, 5], [1]))
    with pytest.raises(ConfigError):
        BinnedExpressionTokenizer(GENES, n_bins=1)
    with pytest.raises(ConfigError):
        RankValueTokenizer(GENES, [1.0, 0.0, 1.0])
    with pytest.raises(DataError, match="no gene"):
        rank.align(ExpressionMatrix(torch.ones(1, 1), ["other"], ["c"]))
