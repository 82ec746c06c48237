"""The command line itself: one-line errors with exit code 2 (tracebacks with --debug), fast --help, --version."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmblocks import __version__
from fmblocks.cli import COMMANDS, main

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--data", "{tmp}/nonexistent.txt", "--out", "{tmp}/run", "--preset", "gpt2-style"],
     "nonexistent.txt: no such file"),
    (["tokenize", "encode", "--file", "{tmp}/nonexistent", "--tokenizer", "gpt2"], "No such file or directory: "),
    (["tokenize", "encode", "--tokenizer", "{tmp}", "hi"], "a model directory without tokenizer.json, vocab.json + merges.txt or vocab.txt"),
    (["embed", "--model", "{tmp}/nonexistent_dir", "hi"], "nonexistent_dir: not a model directory"),
    (["train", "--data", "{tmp}/c.txt", "--out", "{tmp}/run", "--config", "{tmp}/empty.json"], "not a JSON file"),
    (["train", "--data", "{tmp}/c.txt", "--out", "{tmp}/run", "--config", "{tmp}/list.json"],
     "expected a JSON object of ModelConfig fields, found list"),
    (["train", "--data", "{tmp}/c.txt", "--out", "{tmp}/run", "--config", "{tmp}/missing.json"], "no such file"),
    (["sample", "--checkpoint", "{tmp}/c.txt"], "no checkpoint here"),
])
def test_errors_are_one_line_with_exit_code_2(argv, message, tmp_path, capsys) -> None:
    (tmp_path / "c.txt").write_text("hello world\n")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fmblocks {argv[0]}: error: ") and message in err, err
    assert not (tmp_path / "run").exists()  # nothing left behind by a refused run


def test_a_permission_error_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    from fmblocks.data import text

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "secret.txt"))

    monkeypatch.setattr(text.Path, "read_bytes", denied)
    monkeypatch.setattr(text.Path, "read_text", denied)
    (tmp_path / "secret.txt").write_text("x")
    assert main(["tokenize", "encode", "--file", str(tmp_path / "secret.txt"), "--tokenizer", "gpt2"]) == 2
    assert capsys.readouterr().err == f"fmblocks tokenize: error: Permission denied: {tmp_path / 'secret.txt'}\n"


def test_debug_shows_the_traceback(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        main(["--debug", "tokenize", "encode", "--file", str(tmp_path / "nonexistent"), "--tokenizer", "gpt2"])


def test_help_version_and_argument_errors_do_not_import_torch() -> None:
    script = f"""
import sys
from fmblocks.cli import main
for argv in [["--help"], ["--version"], ["train"], ["tokenize", "encode", "--help"]] + [[c, "--help"] for c in {COMMANDS!r}]:
    try:
        main(argv)
    except SystemExit:
        pass
print("LOADED", [name for name in ("torch", "numpy", "matplotlib", "safetensors") if name in sys.modules])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert done.stdout.strip().endswith("LOADED []"), done.stdout[-500:] + done.stderr[-2000:]
    assert f"fmblocks {__version__}" in done.stdout
    assert "the following arguments are required: --data, --out" in done.stderr
