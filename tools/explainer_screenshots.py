"""Screenshots of every explainer view, for docs/explainer.md.

    python tools/explainer_screenshots.py            # writes docs/images/explainer-<view>.png

Serves the built-in model on a free loopback port, opens the page in headless Chromium (Debian's
chromium + chromium-driver, see tools/webdriver.py), picks layer 2, head 1 and the token "s" of
"statement", sets temperature 0.8 and top-k 10, samples a continuation, and saves each view's element.
"""

import argparse
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "src"))

from webdriver import Browser  # noqa: E402

VIEWS = ["architecture", "tokens", "embeddings", "qkv", "attention", "mlp", "residual", "probabilities", "sampling"]
TEXT = "The for statement is used to iterate over the elements of a sequence"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)

    from fmblocks.explainer.default import default_model
    from fmblocks.explainer.server import Explainer, make_server

    model, tokenizer = default_model()
    server = make_server(Explainer(model, tokenizer, default_text=TEXT), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args.out.mkdir(parents=True, exist_ok=True)
    token = TEXT.index("statement")
    try:
        with Browser(width=1200, height=1400) as page:
            page.get(server.url)
            page.wait("return document.body.dataset.ready && document.querySelectorAll('#tok-pieces .token').length")
            page.find('#tokenizer option[value="gpt2"]').click()
            top_k = page.find("#top-k")
            top_k.clear()
            top_k.send_keys("10")
            page.run("const t = document.getElementById('temperature'); t.value = 0.8;"
                     "t.dispatchEvent(new Event('input'))")
            page.wait("return document.getElementById('cutoff').textContent.includes(' · temperature 0.8 · top-k 10 ·')")
            page.find('#attn-overview canvas[data-layer="2"][data-head="1"]').click()
            page.run("const s = document.getElementById('token-slider'); s.value = arguments[0];"
                     "s.dispatchEvent(new Event('input'))", token)
            page.wait("return document.body.dataset.ready === arguments[0]", f"2/1/{token}")
            page.find("#new-tokens").clear()
            page.find("#new-tokens").send_keys("60")
            page.find("#sample").click()
            page.wait("return document.querySelectorAll('#sampled-tokens .token').length === 60")
            for view in VIEWS:
                path = args.out / f"explainer-{view}.png"
                page.run("document.getElementById(arguments[0]).scrollIntoView()", view)
                page.find(f"#{view}").screenshot(path)
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
