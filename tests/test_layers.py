"""Layers depend one way: blocks < quantizers < tokenizers, models. Read from the import statements."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fmblocks"
FORBIDDEN = {
    "blocks": ("fmblocks.tokenizers", "fmblocks.models", "fmblocks.quantizers", "fmblocks.training"),
    "quantizers": ("fmblocks.tokenizers", "fmblocks.models", "fmblocks.training"),
    "tokenizers": ("fmblocks.models", "fmblocks.training"),
    "models": ("fmblocks.tokenizers", "fmblocks.training"),
}


def imported(path: Path) -> set[str]:
    """Every module named by an import statement of the file (at any depth, lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_no_layer_above_it(layer: str) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files
    wrong = {f"{path.relative_to(SRC)} imports {name}" for path in files for name in imported(path)
             if name.startswith(FORBIDDEN[layer])}
    assert not wrong, sorted(wrong)


def test_the_check_finds_a_forbidden_import(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from fmblocks.models.config import ModelConfig\n")
    assert "fmblocks.models.config" in imported(sample)
