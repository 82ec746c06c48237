"""A headless Chromium (Debian's chromium + chromium-driver over WebDriver) on a running explainer server.

Skipped, with the reason, only where the browser is not installed (`make test` installs it as root).
"""

import json
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from webdriver import Browser, find_browser  # noqa: E402

from fmblocks.explainer.server import Explainer, make_server  # noqa: E402
from fmblocks.models import build_model, preset  # noqa: E402
from fmblocks.tokenizers.simple import train_char  # noqa: E402

TEXT = "Attention mixes the context."


def serving(model, tokenizer, text, source="", digits=None):
    explainer = Explainer(model, tokenizer, default_text=text, default_source=source, digits=digits)
    server = make_server(explainer, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="session")
def site():
    """(server url, explainer) for a tiny character-level decoder, served from a thread."""
    tokenizer = train_char(["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"])
    torch.manual_seed(0)
    model = build_model(preset("gpt2-style", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=3, n_heads=4,
                               d_ff=64, max_len=64)).eval()
    server = serving(model, tokenizer, TEXT)
    yield server.url, server.explainer
    server.shutdown()
    server.server_close()


PROTEIN = "MKT<mask>YIAKQR"


@pytest.fixture(scope="session")
def encoder_site():
    """The url of a tiny ESM-style protein encoder's page (fill-mask)."""
    from fmblocks.tokenizers.bio_protein import ProteinTokenizer

    tokenizer = ProteinTokenizer()
    torch.manual_seed(0)
    model = build_model(preset("esm-style", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4,
                               d_ff=64, max_len=32)).eval()
    server = serving(model, tokenizer, PROTEIN)
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    found = find_browser()
    if isinstance(found, str):
        pytest.skip(f"no browser for the browser tests: {found}")
    with Browser() as b:
        yield b


@pytest.fixture(scope="session")
def api(site):
    """api(path, body=None): the server's own answer, to compare the page with."""
    def call(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(site[0].rstrip("/") + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    return call


@pytest.fixture()
def page(site, browser):
    """The page freshly loaded and drawn (layer 0, head 0, last token)."""
    browser.get(site[0])
    browser.wait("return document.body.dataset.ready && document.querySelectorAll('#tok-pieces .token').length")
    return browser


@pytest.fixture(scope="session")
def seq2seq_site():
    """The url of a tiny encoder-decoder's page (cross-attention), opening on source "the cat sat"."""
    tokenizer = train_char(["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"])
    torch.manual_seed(0)
    model = build_model(preset("transformer-base", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2,
                               n_heads=4, d_ff=64, max_len=32, n_decoder_layers=3)).eval()
    server = serving(model, tokenizer, "die Katze", "the cat sat")
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def vit_site():
    """The url of a tiny ViT's page over 20 real MNIST digits."""
    from fmblocks.data.mnist import Digits, load_shipped

    torch.manual_seed(0)
    model = build_model(preset("vit-tiny", d_model=32, n_layers=2, n_heads=4, d_ff=64)).eval()
    shipped = load_shipped()
    server = serving(model, None, "Attention", digits=Digits(shipped.images[:20], shipped.labels[:20]))
    yield server.url
    server.shutdown()
    server.server_close()
