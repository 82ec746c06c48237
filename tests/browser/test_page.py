"""The explainer page in a real Chromium: every view is drawn, and follows the text, the sliders, the layer,
head and token picked and the tokenizer chosen, with the values the API gives."""

import pytest

TEXT = "Attention mixes the context."
VIEWS = ["architecture", "tokens", "embeddings", "qkv", "attention", "mlp", "residual", "probabilities", "sampling"]
TOKENS = "return [...document.querySelectorAll('#model-tokens .token')].map(e => e.firstChild.textContent)"


def shown(text: str) -> str:
    return text.replace(" ", "\u2423")


def test_every_view_is_drawn_from_the_api(page, api) -> None:
    for view in VIEWS:
        assert page.run("return !!document.getElementById(arguments[0])", view), view
    data = api("/api/analyze", {"text": TEXT})
    assert page.run(TOKENS) == [shown(t) for t in data["tokens"]]
    assert page.run("return document.querySelectorAll('#arch-diagram .block').length") == data["n_layers"]
    assert page.run("return document.querySelectorAll('#attn-overview canvas').length") == data["n_layers"] * data["n_heads"]
    labels = page.run("return [...document.querySelectorAll('#attn-heatmap text.row-label')].map(e => e.textContent)")
    assert labels == [shown(t) for t in data["tokens"]]
    assert page.run("return document.querySelectorAll('#attn-heatmap text.col-label').length") == len(data["tokens"])
    weights = page.run("return [...document.querySelectorAll('#attn-heatmap rect[data-w]')].map(e => +e.dataset.w)")
    assert weights == pytest.approx([w for row in data["attention"][0][0] for w in row], abs=1e-9)
    lens = page.run("return [...document.querySelectorAll('#lens-table tr[data-layer]')].map("
                    "r => [...r.querySelectorAll('td')].map(c => +c.dataset.p))")
    assert [p for row in lens for p in row] == pytest.approx([top[0]["p"] for layer in data["lens"] for top in layer],
                                                             abs=1e-9)
    assert len(lens) == data["n_layers"]
    bars = page.run("return [...document.querySelectorAll('#next .bar')].map(b => [+b.dataset.id, +b.dataset.p])")
    assert [b[0] for b in bars] == [n["id"] for n in data["next"]]
    assert [b[1] for b in bars] == pytest.approx([n["p"] for n in data["next"]], abs=1e-9)
    labelled = page.run("return document.querySelectorAll('#emb-map text').length")
    assert 1 <= labelled <= len(data["tokens"])  # labels that would overlap are left out
    assert page.run("return document.querySelectorAll('#emb-map circle').length") == len(data["tokens"])


def test_typing_redraws_every_view(page, api) -> None:
    box = page.find("#text")
    box.clear()
    box.send_keys("the cat sat")
    page.wait("return document.querySelectorAll('#model-tokens .token').length === 11 && "
              "document.querySelectorAll('#tok-pieces .token').length === 11 && "
              "document.body.dataset.ready === '0/0/10'")
    data = api("/api/analyze", {"text": "the cat sat"})
    assert page.run(TOKENS) == [shown(t) for t in data["tokens"]]
    assert page.run("return document.querySelectorAll('#qkv-table td.weight').length") == 11
    assert page.run("return document.querySelectorAll('#attn-heatmap text.row-label').length") == 11


def test_the_sliders_change_the_probabilities_and_the_cut_off(page, api) -> None:
    top_k = page.find("#top-k")
    top_k.clear()
    top_k.send_keys("3")
    slider = page.find("#temperature")
    slider.click()
    slider.send_keys("\ue012" * 10)  # ArrowLeft ten times: 1 -> 0.5
    page.wait("return document.getElementById('temperature-out').textContent === '0.5' && "
              "document.getElementById('cutoff').textContent.includes(' · temperature 0.5 · top-k 3 ·')")
    data = api("/api/analyze", {"text": TEXT, "temperature": 0.5, "top_k": 3})
    sampled = page.run("return [...document.querySelectorAll('#next .bar')].map(b => +b.dataset.pSampled)")
    assert sampled == pytest.approx([n["p_sampled"] for n in data["next"]], abs=1e-9)
    assert page.run("return document.querySelectorAll('#next .bar.cut').length") == len(data["next"]) - 3
    assert page.run("return document.querySelectorAll('#next .cutline').length") == 1
    assert f"keeps {data['cutoff']['kept']} of" in page.find("#cutoff").text


def test_picking_a_layer_head_and_token_updates_qkv_mlp_and_embeddings(page, api) -> None:
    page.find('#attn-overview canvas[data-layer="2"][data-head="1"]').click()
    page.wait("return document.body.dataset.ready === '2/1/27'")
    assert page.run("return document.querySelector('#arch-diagram .block.selected').dataset.layer") == "2"
    assert page.run("return document.getElementById('layer').value") == "2"
    slider = page.find("#token-slider")
    slider.click()
    slider.send_keys("\ue011" + "\ue014" * 4)  # Home, then ArrowRight four times: token 4
    page.wait("return document.body.dataset.ready === '2/1/4'")
    detail = api("/api/inspect", {"text": TEXT, "layer": 2, "head": 1, "token": 4})
    weights = page.run("return [...document.querySelectorAll('#qkv-table td.weight')].map(c => +c.dataset.value)")
    assert weights == pytest.approx(detail["qkv"]["weights"], abs=1e-9)
    dots = page.run("return [...document.querySelectorAll('#qkv-table td.dot')].map(c => +c.dataset.value)")
    assert dots == pytest.approx(detail["qkv"]["dots"], abs=1e-9)
    assert page.run("return document.querySelectorAll('#qkv-table td.mask-off').length") == len(detail["ids"]) - 5
    units = page.run("return [...document.querySelectorAll('#mlp-units .unit')].map(u => [+u.dataset.unit, +u.dataset.value])")
    assert [u[0] for u in units] == [u[0] for u in detail["mlp"]["units"]]
    assert [u[1] for u in units] == pytest.approx([u[1] for u in detail["mlp"]["units"]], abs=1e-9)
    cells = page.run("return document.querySelectorAll('#emb-vectors .vector')[0].querySelectorAll('.cell').length")
    assert cells == len(detail["embedding"]["token"])
    assert page.run("return document.querySelectorAll('#emb-vectors .vector').length") == 3  # token, position, sum
    page.find('#arch-diagram .block[data-layer="0"]').click()  # the diagram selects a layer too
    page.wait("return document.body.dataset.ready === '0/1/4'")
    assert page.run("return document.querySelector('#lens-table tr.selected').dataset.layer") == "0"


@pytest.mark.parametrize("name", ["gpt2", "bert-base-uncased", "dna-3mer"])
def test_switching_tokenizers_shows_their_pieces(page, api, name) -> None:
    page.find(f'#tokenizer option[value="{name}"]').click()
    text = "ACGTTNAC" if name == "dna-3mer" else TEXT
    if name == "dna-3mer":
        page.run("const t = document.getElementById('text'); t.value = arguments[0];"
                 "t.dispatchEvent(new Event('input'))", text)
    expected = api("/api/tokenize", {"text": text, "tokenizer": name})
    page.wait("return JSON.stringify([...document.querySelectorAll('#tok-pieces .token')].map(e => +e.dataset.id))"
              " === arguments[0]", str(expected["ids"]).replace(" ", ""))
    assert f"{expected['n_tokens']} tokens" in page.find("#tok-stats").text


def test_a_refused_text_says_why_in_the_playground(page) -> None:
    page.find('#tokenizer option[value="dna-3mer"]').click()
    page.wait("return document.getElementById('tok-error').textContent.length > 0")
    assert page.run("return document.querySelectorAll('#tok-pieces .token').length") == 0


def test_sampling_shows_the_continuation_token_by_token(page, api) -> None:
    page.find("#new-tokens").clear()
    page.find("#new-tokens").send_keys("8")
    page.find("#sample").click()
    page.wait("return document.querySelectorAll('#sampled-tokens .token').length === 8")
    expected = api("/api/generate", {"text": TEXT, "max_new_tokens": 8, "seed": 0})
    ids = page.run("return [...document.querySelectorAll('#sampled-tokens .token')].map(e => +e.dataset.id)")
    assert ids == expected["ids"]
    assert page.find("#continuation mark").text == expected["continuation"]


def test_an_encoder_page_fills_the_mask(encoder_site, browser) -> None:
    import json
    import urllib.request

    browser.get(encoder_site)
    browser.wait("return document.body.dataset.ready && document.getElementById('cutoff').textContent")
    request = urllib.request.Request(encoder_site + "api/analyze", data=b'{"text": "MKT<mask>YIAKQR"}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    assert browser.find("#cutoff").text.startswith(f"fill-mask at token {data['position']}")
    bars = browser.run("return [...document.querySelectorAll('#next .bar')].map(b => +b.dataset.id)")
    assert bars == [n["id"] for n in data["next"]]
    assert browser.run("return document.getElementById('sample').disabled")
    assert "masked-LM head" in browser.find("#arch-diagram").text
    mask = browser.run("return [...document.querySelectorAll('#qkv-table td.mask-off')].length")
    assert mask == 0  # bidirectional: no key is masked


def test_an_encoder_decoder_page_shows_cross_attention(seq2seq_site, browser) -> None:
    import json
    import urllib.request

    browser.get(seq2seq_site)
    browser.wait("return document.body.dataset.ready && !document.getElementById('cross-box').hidden")
    source = browser.find("#source")
    source.send_keys(" down")
    browser.wait("return document.querySelectorAll('#cross-heatmap text.col-label').length === 16")
    browser.find('#attn-overview canvas[data-layer="2"][data-head="3"]').click()
    browser.wait("return document.body.dataset.ready === '2/3/8'")
    body = json.dumps({"text": "die Katze", "source": "the cat sat down"}).encode()
    request = urllib.request.Request(seq2seq_site + "api/analyze", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    columns = browser.run("return [...document.querySelectorAll('#cross-heatmap text.col-label')].map(e => e.textContent)")
    assert columns == [shown(t) for t in data["source"]["tokens"]]
    rows = browser.run("return [...document.querySelectorAll('#cross-heatmap text.row-label')].map(e => e.textContent)")
    assert rows == [shown(t) for t in data["tokens"]]
    weights = browser.run("return [...document.querySelectorAll('#cross-heatmap rect[data-w]')].map(e => +e.dataset.w)")
    assert weights == pytest.approx([w for row in data["cross_attention"][2][3] for w in row], abs=1e-9)
    assert browser.run("return document.querySelectorAll('#arch-diagram .block.encoder').length") == 2
    assert browser.run("return document.querySelectorAll('#arch-diagram .part.cross').length") == 3


def test_a_vit_page_draws_attention_over_the_digit(vit_site, browser) -> None:
    import json
    import urllib.request

    browser.get(vit_site)
    browser.wait("return document.body.dataset.ready && !document.getElementById('image-attn-box').hidden")
    box = browser.find("#image-index")
    box.clear()
    box.send_keys("7")
    browser.wait("return document.getElementById('image-label').textContent.startsWith('digit 7,')")
    browser.find('#model-tokens .token[data-index="6"]').click()
    browser.find('#attn-overview canvas[data-layer="1"][data-head="2"]').click()
    browser.wait("return document.body.dataset.ready === '1/2/6'")
    request = urllib.request.Request(vit_site + "api/analyze", data=b'{"image": 7}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    weights = json.loads(browser.run("return document.getElementById('attn-image').dataset.weights"))
    assert weights == pytest.approx(data["attention"][1][2][6][1:], abs=1e-9)
    assert browser.find("#cutoff").text.startswith(f"the digit's class (read from CLS; labelled {data['image']['label']})")
    assert browser.run(TOKENS)[:2] == ["CLS", "0,0"]
    assert browser.run("return document.getElementById('sample').disabled")


def post(site: str, path: str, body: dict) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(site.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_an_encoder_decoder_page_shows_the_encoder_cross_qkv_and_samples(seq2seq_site, browser) -> None:
    browser.get(seq2seq_site)
    browser.wait("return document.body.dataset.ready && !document.getElementById('encoder-box').hidden")
    browser.find('#attn-overview canvas[data-layer="1"][data-head="2"]').click()
    browser.find('#model-tokens .token[data-index="3"]').click()
    browser.find('#encoder-layer option[value="1"]').click()
    browser.wait("return document.body.dataset.ready === '1/2/3'")
    inputs = {"text": "die Katze", "source": "the cat sat"}
    data = post(seq2seq_site, "/api/analyze", inputs)
    encoder = browser.run("return [...document.querySelectorAll('#encoder-heatmap rect[data-w]')].map(e => +e.dataset.w)")
    assert encoder == pytest.approx([w for row in data["encoder_attention"][1][2] for w in row], abs=1e-9)
    labels = browser.run("return [...document.querySelectorAll('#encoder-heatmap text.row-label')].map(e => e.textContent)")
    assert labels == [shown(t) for t in data["source"]["tokens"]]
    detail = post(seq2seq_site, "/api/inspect", {**inputs, "layer": 1, "head": 2, "token": 3})
    assert not browser.run("return document.getElementById('cross-qkv-box').hidden")
    weights = browser.run("return [...document.querySelectorAll('#cross-qkv-table td.weight')].map(c => +c.dataset.value)")
    assert weights == pytest.approx(detail["cross_qkv"]["weights"], abs=1e-9)
    assert weights == pytest.approx(data["cross_attention"][1][2][3], abs=1e-6)  # the heatmap's row
    keys = browser.run("return [...document.querySelectorAll('#cross-qkv-table td.key')].map(c => JSON.parse(c.dataset.value))")
    assert [v for k in keys for v in k] == pytest.approx([v for k in detail["cross_qkv"]["keys"] for v in k], abs=1e-9)
    rows = browser.run("return [...document.querySelectorAll('#cross-qkv-table tr td:first-child')].map(c => c.textContent)")
    assert rows == [f"{j} {shown(t)}" for j, t in enumerate(data["source"]["tokens"])]
    assert browser.run("return document.querySelectorAll('#cross-qkv-table td.mask-off').length") == 0
    browser.find("#new-tokens").clear()
    browser.find("#new-tokens").send_keys("6")
    browser.find("#sample").click()
    browser.wait("return document.querySelectorAll('#sampled-tokens .token').length === 6")
    expected = post(seq2seq_site, "/api/generate", {**inputs, "max_new_tokens": 6, "seed": 0})
    assert browser.run("return [...document.querySelectorAll('#sampled-tokens .token')].map(e => +e.dataset.id)") == \
        expected["ids"]
    assert browser.find("#continuation mark").text == expected["continuation"]
