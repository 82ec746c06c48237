// The explainer page: talks to the fmblocks server's JSON API and draws with canvas/SVG (no libraries).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { data: null, layer: 0, head: 0, hover: null };

function show(text) {  // make whitespace visible inside token chips
  return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5") || "\u2205";
}

function options() {
  return {
    text: $("text").value,
    temperature: Number($("temperature").value),
    top_k: Number($("top-k").value) || null,
    top_p: Number($("top-p").value) < 1 ? Number($("top-p").value) : null,
    max_new_tokens: Number($("new-tokens").value),
    seed: Number($("seed").value),
  };
}

async function call(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));  // a proxy or the stdlib's own errors send HTML
  if (!response.ok) throw new Error(payload.error || `${response.status} ${response.statusText}`);
  return payload;
}

function heat(value) {  // 0..1 -> white..blue; square-root scale so weights spread over many keys stay visible
  const v = Math.sqrt(Math.max(0, Math.min(1, value)));
  return `rgb(${Math.round(255 - 197 * v)},${Math.round(255 - 156 * v)},${Math.round(255 - 39 * v)})`;
}

function drawMatrix(canvas, matrix, highlightRow) {
  const n = matrix.length, ctx = canvas.getContext("2d"), cell = canvas.width / n;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  matrix.forEach((row, i) => row.forEach((w, j) => {
    ctx.fillStyle = heat(w);
    ctx.fillRect(j * cell, i * cell, Math.ceil(cell), Math.ceil(cell));
  }));
  if (highlightRow !== null && highlightRow < n) {
    ctx.strokeStyle = "#d9480f"; ctx.lineWidth = 2;
    ctx.strokeRect(1, highlightRow * cell, canvas.width - 2, cell);
  }
}

function drawTokens() {
  const { data, layer, head, hover } = state, box = $("tokens");
  box.replaceChildren();
  const row = hover === null ? null : data.attention[layer][head][hover];
  data.tokens.forEach((token, i) => {
    const chip = document.createElement("span");
    chip.className = "token";
    chip.style.background = row ? heat(row[i]) : `hsl(${(i * 47) % 360} 70% 92%)`;
    chip.textContent = show(token);
    const id = document.createElement("small");
    id.textContent = data.ids[i];
    chip.appendChild(id);
    chip.onmouseenter = () => { state.hover = i; drawTokens(); drawAttention(); };
    chip.onmouseleave = () => { state.hover = null; drawTokens(); drawAttention(); };
    box.appendChild(chip);
  });
}

function drawAttention() {
  const { data, layer, head, hover } = state, heads = $("heads");
  heads.replaceChildren();
  data.attention[layer].forEach((matrix, h) => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 72;
    canvas.title = `layer ${layer} · head ${h}`;
    canvas.className = h === head ? "selected" : "";
    canvas.onclick = () => { state.head = h; drawAll(); };
    drawMatrix(canvas, matrix, null);
    heads.appendChild(canvas);
  });
  drawMatrix($("attention-big"), data.attention[layer][head], hover);
}

function drawEmbeddings() {
  const svg = $("embeddings"), points = state.data.embeddings_2d, size = 420, pad = 30;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const scale = (v, lo, hi) => pad + ((v - lo) / ((hi - lo) || 1)) * (size - 2 * pad);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  svg.innerHTML = points.map((p, i) => {
    const x = scale(p[0], x0, x1), y = size - scale(p[1], y0, y1);
    const label = show(state.data.tokens[i]).replace(/&/g, "&amp;").replace(/</g, "&lt;");
    return `<circle cx="${x}" cy="${y}" r="4" fill="hsl(${(i * 47) % 360} 60% 50%)"></circle>` +
           `<text x="${x + 6}" y="${y - 4}">${label}</text>`;
  }).join("");
}

function drawNext() {
  const box = $("next"), top = Math.max(...state.data.next.map((n) => Math.max(n.p, n.p_sampled)));
  box.replaceChildren(...state.data.next.map((n) => {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.innerHTML = `<span class="label"></span><span class="track"><span class="p"></span><span class="q"></span></span>` +
                    `<span>${(100 * n.p).toFixed(1)}% → ${(100 * n.p_sampled).toFixed(1)}%</span>`;
    bar.querySelector(".label").textContent = show(n.token);
    bar.querySelector(".p").style.width = `${(100 * n.p) / top}%`;
    bar.querySelector(".q").style.width = `${(100 * n.p_sampled) / top}%`;
    return bar;
  }));
}

function drawAll() {
  const layers = $("layer");
  if (layers.options.length !== state.data.n_layers) {
    layers.replaceChildren(...Array.from({ length: state.data.n_layers }, (_, i) => new Option(`${i}`, i)));
  }
  layers.value = state.layer;
  drawTokens(); drawAttention(); drawEmbeddings(); drawNext();
}

function slice(text, start, end) {  // by characters (code points), as the server counts them
  return Array.from(text).slice(start, end).join("");
}

function showTruncation(box, truncated, text) {  // say that, and where, a long text was cut
  box.replaceChildren();
  if (!truncated) return;
  box.append(truncated.message);
  if (truncated.start !== null) {
    const from = document.createElement("q");
    from.textContent = slice(text, truncated.start, truncated.start + 40) + "\u2026";
    box.append(": ", from);
  }
}

let pending = null;
async function analyze() {
  try {
    const asked = options();
    state.data = await call("/api/analyze", asked);
    showTruncation($("truncated"), state.data.truncated, asked.text);
    state.layer = Math.min(state.layer, state.data.n_layers - 1);
    state.head = Math.min(state.head, state.data.n_heads - 1);
    $("error").textContent = "";
    drawAll();
  } catch (err) { $("error").textContent = err.message; }
}
function analyzeSoon() { clearTimeout(pending); pending = setTimeout(analyze, 250); }

async function sampleContinuation() {
  try {
    const asked = options();
    const result = await call("/api/generate", asked);
    const out = $("continuation"), start = (result.truncated && result.truncated.start) || 0;
    out.replaceChildren();
    if (start) {  // the part of the text the model did not see
      const cut = document.createElement("del");
      cut.title = result.truncated.message;
      cut.textContent = slice(asked.text, 0, start);
      out.appendChild(cut);
    }
    out.appendChild(document.createTextNode(slice(asked.text, start)));
    const mark = document.createElement("mark");
    mark.textContent = result.continuation;
    out.appendChild(mark);
    showTruncation($("continuation-truncated"), result.truncated, asked.text);
    $("error").textContent = "";
  } catch (err) { $("error").textContent = err.message; }
}

async function start() {
  const info = await call("/api/info");
  const m = info.model;
  $("model-info").textContent = `${m.arch} · ${m.n_layers} layers · ${m.n_heads} heads · d_model ${m.d_model} · ` +
    `${m.pos} positions · ${m.norm} norm · ${m.ffn} · vocabulary ${info.vocab_size} · context ${m.max_len}`;
  $("text").value = info.default_text;
  $("new-tokens").max = info.max_new_tokens;
  $("new-tokens").value = Math.min(Number($("new-tokens").value), info.max_new_tokens);
  $("text").oninput = analyzeSoon;
  for (const id of ["temperature", "top-p"]) {
    $(id).oninput = () => { $(`${id}-out`).textContent = $(id).value; analyzeSoon(); };
  }
  $("top-k").oninput = analyzeSoon;
  $("layer").onchange = () => { state.layer = Number($("layer").value); drawAll(); };
  $("sample").onclick = sampleContinuation;
  await analyze();
}
start().catch((err) => { $("error").textContent = err.message; });
