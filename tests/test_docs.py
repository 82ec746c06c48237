"""README.md and docs/*.md snippets run: each ```python block, in order, in one namespace per file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: p.name)
def test_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets that write files write here, never into the repo
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(SNIPPET.findall(page.read_text(encoding="utf-8")), start=1):
        exec(compile(code, f"{page.name}#snippet{number}", "exec"), namespace)
