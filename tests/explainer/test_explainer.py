"""The explainer: analysis data against direct model calls and sklearn's PCA; the server on loopback."""

import json
import re
import urllib.error
import urllib.request
from importlib import resources

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import analyze, continue_text, pca_2d
from fmblocks.explainer.server import Explainer, make_server

TEXT = "Attention mixes the context."


def test_analysis_matches_the_model(parts) -> None:
    model, tokenizer = parts
    data = analyze(model, tokenizer, TEXT, temperature=0.7, top_k=5)
    ids = tokenizer.encode(TEXT)
    assert data["ids"] == ids and len(data["tokens"]) == len(ids)
    attention = torch.tensor(data["attention"])  # (L, H, T, T)
    assert attention.shape == (2, 4, len(ids), len(ids))
    assert torch.allclose(attention.sum(-1), torch.ones(2, 4, len(ids)), atol=1e-5)
    assert torch.all(attention.triu(diagonal=1) == 0)  # causal: no weight on future tokens
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    probs = logits.softmax(-1)
    best = probs.topk(15)
    assert [n["id"] for n in data["next"]] == best.indices.tolist()
    assert [n["p"] for n in data["next"]] == pytest.approx(best.values.tolist(), abs=1e-6)
    kept = [n for n in data["next"] if n["p_sampled"] > 0]
    assert len(kept) == 5  # top-k 5 leaves exactly five candidates
    expected = (logits / 0.7).topk(5).values.softmax(-1)
    assert [n["p_sampled"] for n in kept] == pytest.approx(expected.tolist(), abs=1e-6)


def test_pca_matches_sklearn() -> None:
    x = torch.randn(12, 8, dtype=torch.float64)
    ours = pca_2d(x).numpy()
    reference = PCA(n_components=2).fit_transform(x.numpy())
    assert np.allclose(np.abs(ours), np.abs(reference), atol=1e-8)  # axes are defined up to sign
    assert pca_2d(torch.randn(1, 8)).shape == (1, 2)  # one token: no variance, still two coordinates


def test_continuation_is_seeded_and_bounded(parts) -> None:
    model, tokenizer = parts
    first = continue_text(model, tokenizer, TEXT, max_new_tokens=6, seed=3)
    again = continue_text(model, tokenizer, TEXT, max_new_tokens=6, seed=3)
    assert first == again and len(first["ids"]) == 6
    long_text = " ".join(["word"] * 40)  # longer than the context: the last tokens are kept
    assert len(continue_text(model, tokenizer, long_text, max_new_tokens=4)["ids"]) == 4


@pytest.fixture()
def server(parts, serve):
    with serve(Explainer(*parts, default_text=TEXT)) as server:
        yield server.url.rstrip("/")


def fetch(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_server_serves_the_page_and_the_api(server) -> None:
    status, page = fetch(server + "/")
    assert status == 200 and b"/app.js" in page
    assert fetch(server + "/app.js")[0] == 200 and fetch(server + "/style.css")[0] == 200
    info = json.loads(fetch(server + "/api/info")[1])
    assert info["default_text"] == TEXT and info["model"]["n_heads"] == 4
    status, body = fetch(server + "/api/analyze", {"text": TEXT, "temperature": 1.0, "top_k": 0, "top_p": 0.9})
    assert status == 200 and len(json.loads(body)["attention"]) == 2
    status, body = fetch(server + "/api/generate", {"text": TEXT, "max_new_tokens": 3, "seed": 1})
    assert status == 200 and len(json.loads(body)["ids"]) == 3


def test_server_rejects_bad_requests(server) -> None:
    status, body = fetch(server + "/api/analyze", {"text": TEXT, "temperature": "hot"})
    assert status == 400 and "hot" in json.loads(body)["error"]
    status, body = fetch(server + "/api/analyze", {"text": TEXT, "temperature": -1})
    assert status == 400 and "temperature" in json.loads(body)["error"]
    status, body = fetch(server + "/api/generate", {"text": TEXT, "max_new_tokens": 500})
    assert status == 400 and "max_new_tokens" in json.loads(body)["error"]
    assert fetch(server + "/api/nothing", {})[0] == 404
    assert fetch(server + "/../../etc/passwd")[0] == 404


def test_binds_to_loopback_only(parts) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        make_server(Explainer(*parts), host="0.0.0.0", port=0)


def test_page_has_no_external_assets() -> None:
    static = resources.files("fmblocks.explainer") / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text().replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_every_element_the_script_uses_is_on_the_page() -> None:
    static = resources.files("fmblocks.explainer") / "static"
    script, page = (static / "app.js").read_text(), (static / "index.html").read_text()
    used = set(re.findall(r'\$\("([\w-]+)"\)', script))
    assert {"truncated", "continuation-truncated"} <= used
    assert used <= set(re.findall(r'id="([\w-]+)"', page))


def test_the_shipped_default_model_loads_without_training(monkeypatch) -> None:
    from fmblocks.explainer import default

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped model should be loaded, not trained")

    monkeypatch.setattr(default, "train_default", no_training)
    model, tokenizer = default.default_model()
    assert model.config.arch == "decoder" and model.config.vocab_size == tokenizer.vocab_size
    data = analyze(model, tokenizer, default.DEFAULT_TEXT)
    assert data["tokens"] == list(default.DEFAULT_TEXT)  # one character per token
    files = resources.files("fmblocks.explainer") / "model"
    assert sum((files / name).stat().st_size if hasattr(files / name, "stat") else len((files / name).read_bytes())
               for name in (default.CONFIG_FILE, default.WEIGHTS_FILE, default.TOKENIZER_FILE)) < 5_000_000


def test_export_round_trips_in_float16(char_parts, tmp_path) -> None:
    from fmblocks.explainer import default

    model, tokenizer = char_parts
    default.export(model, tokenizer, tmp_path)
    again, tokenizer_again = default.load_model_dir(tmp_path)
    assert tokenizer_again.encode("abc") == tokenizer.encode("abc")
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor.half().float()), name
    assert again.lm_head.weight is again.embed.tokens.weight  # still tied


def test_cli_refuses_a_public_address(capsys) -> None:
    from fmblocks.cli import main

    assert main(["explain", "--host", "0.0.0.0", "--checkpoint", "nowhere"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_fmblocks_explain_answers_its_first_page_within_ten_seconds() -> None:
    import os
    import subprocess
    import sys
    import time

    started = time.monotonic()
    command = [sys.executable, "-c", "import sys; from fmblocks.cli import main; sys.exit(main(sys.argv[1:]))",
               "explain", "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://\S+/", line)
        assert url, (line, process.stderr.read() if process.poll() is not None else "")
        with urllib.request.urlopen(url.group(0), timeout=10) as response:
            assert b'id="architecture"' in response.read()
        elapsed = time.monotonic() - started
        request = urllib.request.Request(url.group(0) + "api/analyze", data=b'{"text": "The for statement"}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["tokens"][:3] == ["T", "h", "e"]
    finally:
        process.terminate()
        process.wait(10)
    assert elapsed < 10, f"first page after {elapsed:.1f} s"


def test_cli_model_directory_errors_are_one_line(tmp_path, capsys) -> None:
    from fmblocks.cli import main

    assert main(["explain", "--model", str(tmp_path), "--port", "0"]) == 2
    assert "not a model directory, missing config.json, model.safetensors, tokenizer.json" in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path), "--checkpoint", str(tmp_path), "--port", "0"]) == 2
    assert "not both" in capsys.readouterr().err
