"""Layers depend one way: blocks < quantizers < tokenizers < models < training, apps, explainer, commands.
Read from the import statements of every module of a layer."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fmblocks"
ABOVE_MODELS = ("fmblocks.training", "fmblocks.apps", "fmblocks.explainer", "fmblocks.commands", "fmblocks.cli")
FORBIDDEN = {
    "blocks": ("fmblocks.quantizers", "fmblocks.tokenizers", "fmblocks.models", *ABOVE_MODELS),
    "quantizers": ("fmblocks.tokenizers", "fmblocks.models", *ABOVE_MODELS),
    "tokenizers": ("fmblocks.models", *ABOVE_MODELS),
    "models": ABOVE_MODELS,
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
