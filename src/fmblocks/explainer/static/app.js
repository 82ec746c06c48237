// The explainer page: talks to the fmblocks server's JSON API and draws with plain DOM/SVG/canvas (no libraries).
// state.data is /api/analyze, state.detail /api/inspect for (layer, head, token), state.pieces /api/tokenize.
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { info: null, data: null, detail: null, layer: 0, head: 0, token: null, hover: null };

function show(text) {  // make whitespace visible inside token chips
  return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5") || "\u2205";
}
const fmt = (x, digits = 3) => (x === null || x === undefined ? "\u2212\u221e" : Number(x).toFixed(digits));
const pct = (p) => `${(100 * p).toFixed(1)}%`;

function el(tag, attrs = {}, ...children) {  // a DOM element with attributes / properties and children
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className" || key === "textContent" || key === "title") node[key] = value;
    else if (key.startsWith("on")) node[key] = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}
function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const seq2seq = () => state.info && state.info.model.arch === "encoder-decoder";
const vision = () => state.info && state.info.model.arch === "vit";
const inputs = () => ({
  text: $("text").value,
  ...(seq2seq() ? { source: $("source").value } : {}),
  ...(vision() ? { image: Number($("image-index").value) } : {}),
});

function options() {
  return {
    ...inputs(),
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
function diverging(value, scale) {  // signed value -> red (negative) .. white .. blue (positive)
  const v = Math.max(-1, Math.min(1, value / (scale || 1)));
  return v < 0 ? `rgb(255,${Math.round(255 + 170 * v)},${Math.round(255 + 170 * v)})`
               : `rgb(${Math.round(255 - 190 * v)},${Math.round(255 - 120 * v)},255)`;
}
const hue = (i) => `hsl(${(i * 47) % 360} 70% 90%)`;

// --- selection ------------------------------------------------------------------------------------

function selectedToken() { return state.token === null ? state.data.tokens.length - 1 : state.token; }

function select({ layer = state.layer, head = state.head, token = state.token } = {}) {
  state.layer = layer; state.head = head; state.token = token;
  drawSelection(); drawArchitecture(); drawAttention(); drawMlpNorms(); drawLens(); inspect();
}

function drawSelection() {
  const { data, info } = state, t = selectedToken();
  const layers = $("layer"), heads = $("head");
  if (layers.options.length !== data.n_layers) {
    layers.replaceChildren(...Array.from({ length: data.n_layers }, (_, i) => new Option(`${i}`, i)));
  }
  if (heads.options.length !== data.n_heads) {
    heads.replaceChildren(...Array.from({ length: data.n_heads }, (_, i) => new Option(`${i}`, i)));
  }
  layers.value = state.layer; heads.value = state.head;
  const slider = $("token-slider");
  slider.max = data.tokens.length - 1; slider.value = t;
  $("token-out").textContent = `${t}: ${show(data.tokens[t])}`;
  $("model-tokens").replaceChildren(...data.tokens.map((token, i) => el("span", {
    className: `token${i === t ? " selected" : ""}`, "data-index": i,
    title: `token ${i} · id ${data.ids[i]} · click to select`,
    onclick: () => select({ token: i }),
    onmouseenter: () => { state.hover = i; paintChips(); },
    onmouseleave: () => { state.hover = null; paintChips(); },
  }, show(token), el("small", { textContent: `${data.ids[i]}` }))));
  paintChips();
  if (info) $("model-tokens").title = "the model's tokens: hover one to see where it attends in the selected head";
}

function paintChips() {  // colours only (no new elements): hovering a token shows where it attends
  const { data, hover } = state, row = hover === null ? null : data.attention[state.layer][state.head][hover];
  [...$("model-tokens").children].forEach((chip, i) => { chip.style.background = row ? heat(row[i]) : hue(i); });
}

// --- architecture ---------------------------------------------------------------------------------

function drawArchitecture() {
  const arch = state.info.architecture, box = $("arch-diagram");
  const part = (cls, text) => el("div", { className: `part ${cls}` }, text);
  const blocks = arch.blocks.map((b) => {
    const mixer = b.mixer === "attention"
      ? `multi-head attention · ${b.n_heads} heads${b.n_kv_heads !== b.n_heads ? ` (${b.n_kv_heads} kv)` : ""} · ${b.core}`
      : b.mixer;
    const ffn = `${b.ffn}${b.activation ? ` (${b.activation})` : ""} · d_ff ${b.d_ff}`;
    const norm = `${b.norm} norm`;
    const sublayer = (name, text) => (b.norm_first
      ? [part("norm", norm), part(name, text), part("residual", "+ residual")]
      : [part(name, text), part("residual", "+ residual"), part("norm", norm)]);
    const rows = [...sublayer("mixer", mixer),
                  ...(b.cross ? sublayer("mixer cross", `cross-attention on the encoder's output · ${b.n_heads} heads`) : []),
                  ...sublayer("ffn", ffn)];
    return [b, rows];
  });
  const selectable = blocks.map(([b, rows]) => el("div", {
    className: `block${b.index === state.layer ? " selected" : ""}`, "data-layer": b.index,
    onclick: () => select({ layer: b.index }), title: `select layer ${b.index}`,
  }, el("div", { className: "block-title" }, `${arch.encoder_blocks ? "decoder " : ""}block ${b.index}`), ...rows));
  const encoder = (arch.encoder_blocks || []).map((b) => el("div", { className: "block encoder" },
    el("div", { className: "block-title" }, `encoder block ${b.index}`),
    part("mixer", `bidirectional attention · ${b.n_heads} heads`), part("ffn", `${b.ffn} · d_ff ${b.d_ff}`)));
  const positions = arch.positions === "learned" || arch.positions === "sinusoidal"
    ? `+ ${arch.positions} position embeddings` : `${arch.positions} positions (inside attention)`;
  box.replaceChildren(
    part("embedding", `token embedding · ${arch.vocab_size} × ${arch.d_model}`),
    part("positions", positions),
    ...encoder,
    ...(encoder.length ? [part("positions", "memory → every decoder block's cross-attention; target embedding")] : []),
    ...selectable,
    ...(arch.final_norm ? [part("norm", `final ${arch.final_norm} norm`)] : []),
    part("head", `${arch.arch === "encoder" ? "masked-LM head" : "output head"} → ${arch.vocab_size} logits` +
                 `${arch.tied ? " (tied to the embedding)" : ""}`),
  );
}

// --- tokenizer playground -------------------------------------------------------------------------

async function tokenize() {
  try {
    const result = await call("/api/tokenize", { text: $("text").value, tokenizer: $("tokenizer").value });
    $("tok-error").textContent = result.truncated || "";
    $("tok-stats").textContent = `${result.n_tokens} tokens · ${result.n_chars} characters · ${result.n_bytes} bytes · ` +
      `${result.bytes_per_token === null ? "\u2013" : result.bytes_per_token.toFixed(2)} bytes per token · ` +
      `vocabulary ${result.vocab_size}`;
    $("tok-pieces").replaceChildren(...result.pieces.map((piece, i) => el("span", {
      className: "token", style: { background: hue(i) }, "data-id": result.ids[i],
    }, show(piece), el("small", { textContent: `${result.ids[i]}` }))));
  } catch (err) {
    $("tok-stats").textContent = "";
    $("tok-pieces").replaceChildren();
    $("tok-error").textContent = err.message;
  }
}

// --- embeddings -----------------------------------------------------------------------------------

function vectorStrip(name, values) {
  const scale = Math.max(...values.map(Math.abs)) || 1;
  const cells = values.map((v, i) => el("span", {
    className: "cell", style: { background: diverging(v, scale) }, title: `${name}[${i}] = ${fmt(v, 4)}`,
  }));
  const head = values.slice(0, 6).map((v) => fmt(v)).join(", ");
  return el("div", { className: "vector", "data-name": name },
    el("div", { className: "vector-label" }, `${name} (${values.length}): [${head}, \u2026]`),
    el("div", { className: "strip" }, ...cells));
}

function drawEmbeddingVectors() {
  const e = state.detail.embedding, t = state.detail.token, box = $("emb-vectors");
  const parts = [el("p", { className: "stats" }, `token ${t} \u201c${show(state.detail.tokens[t])}\u201d, id ${state.detail.ids[t]}`),
    vectorStrip(e.scale !== 1 ? `token embedding × ${fmt(e.scale, 2)}` : "token embedding", e.token)];
  if (e.position) parts.push(vectorStrip(`position ${t} (${e.positions})`, e.position));
  else parts.push(el("p", { className: "hint" }, `${e.positions} positions are applied inside attention, not added here`));
  if (e.token_type) parts.push(vectorStrip("token type 0", e.token_type));
  parts.push(vectorStrip(e.normed ? "input = norm(sum)" : "input = sum", e.input));
  box.replaceChildren(...parts);
}

function drawEmbeddingMap() {
  const svg = $("emb-map"), points = state.data.embeddings_2d, width = 460, height = 420, pad = 36;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (v) => pad + ((v - x0) / ((x1 - x0) || 1)) * (width - 2 * pad);
  const sy = (v) => height - pad - ((v - y0) / ((y1 - y0) || 1)) * (height - 2 * pad);
  svg.replaceChildren();
  const placed = [], t = selectedToken();
  const overlaps = (b) => placed.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
  // the selected token first, so its label always shows; then the rest, skipping labels with no free place
  const order = [t, ...points.map((_, i) => i).filter((i) => i !== t)];
  for (const i of order) {
    const x = sx(points[i][0]), y = sy(points[i][1]);
    const label = `${show(state.data.tokens[i])}${i}`;
    svg.appendChild(svgEl("circle", { cx: x, cy: y, r: i === t ? 6 : 4, class: i === t ? "selected" : "",
                                      fill: `hsl(${(i * 47) % 360} 60% 45%)` }));
    const w = 7 * label.length + 4, h = 13;
    const spots = [[6, -4], [6, 12], [-w - 4, -4], [-w - 4, 12], [-w / 2, -10], [-w / 2, 20]];
    for (const [dx, dy] of spots) {
      const box = { x: x + dx, y: y + dy - h + 2, w, h };
      if (box.x < 0 || box.x + w > width || box.y < 0 || box.y + h > height || overlaps(box)) continue;
      placed.push(box);
      svg.appendChild(svgEl("text", { x: x + dx, y: y + dy, class: i === t ? "selected" : "" }, label));
      break;
    }
  }
}

// --- query, keys, values --------------------------------------------------------------------------

function drawQkv() {
  const d = state.detail;
  drawSteps($("qkv-vectors"), $("qkv-table"), d.qkv, d.tokens, d.qkv_reason);
  $("cross-qkv-box").hidden = !d.cross_qkv;
  if (d.cross_qkv) drawSteps($("cross-qkv-vectors"), $("cross-qkv-table"), d.cross_qkv, d.source_tokens);
}

function drawSteps(box, table, q, keyTokens, reason) {  // one query's attention: q, each key's q·k, mask, softmax, v
  const d = state.detail;
  if (!q) { box.replaceChildren(el("p", { className: "note" }, reason)); table.replaceChildren(); return; }
  box.replaceChildren(
    el("p", { className: "stats" }, `layer ${d.layer} · head ${d.head} · query token ${d.token} \u201c${show(d.tokens[d.token])}\u201d · ` +
      `scale 1/\u221a${q.query.length} = ${fmt(q.scale, 4)}`),
    vectorStrip("query q", q.query), vectorStrip("output = \u03a3 weight · v", q.output));
  const header = el("tr", {}, ...["key", "k (first dims)", "q·k", "× scale", q.bias ? "+ bias" : null, "mask", "score",
                                  "softmax", "v (first dims)"].filter((h) => h !== null).map((h) => el("th", {}, h)));
  const rows = keyTokens.map((token, j) => {
    const cells = [
      el("td", { className: "mono" }, `${j} ${show(token)}`),
      el("td", { className: "mono small key", "data-value": JSON.stringify(q.keys[j]) },
         q.keys[j].slice(0, 4).map((v) => fmt(v, 2)).join(" ")),
      el("td", { "data-value": q.dots[j] / q.scale, className: "num" }, fmt(q.dots[j] / q.scale)),
      el("td", { "data-value": q.dots[j], className: "num dot" }, fmt(q.dots[j])),
    ];
    if (q.bias) cells.push(el("td", { "data-value": q.bias[j], className: "num" }, fmt(q.bias[j])));
    cells.push(el("td", { className: q.mask[j] ? "mask-on" : "mask-off" }, q.mask[j] ? "\u2713" : "\u2212\u221e"));
    cells.push(el("td", { "data-value": q.scores[j] === null ? "-Infinity" : q.scores[j], className: "num" }, fmt(q.scores[j])));
    cells.push(el("td", { "data-value": q.weights[j], className: "num weight", style: { background: heat(q.weights[j]) } },
                  fmt(q.weights[j])));
    cells.push(el("td", { className: "mono small" }, q.values[j].slice(0, 4).map((v) => fmt(v, 2)).join(" ")));
    return el("tr", { className: q.mask[j] ? "" : "masked" }, ...cells);
  });
  table.replaceChildren(header, ...rows);
}

// --- attention ------------------------------------------------------------------------------------

function drawSmall(canvas, matrix) {
  const n = matrix.length, ctx = canvas.getContext("2d"), cell = canvas.width / n;
  matrix.forEach((row, i) => row.forEach((w, j) => {
    ctx.fillStyle = heat(w);
    ctx.fillRect(j * cell, i * cell, Math.ceil(cell), Math.ceil(cell));
  }));
}

function drawAttention() {
  const { data, layer, head } = state;
  const grid = el("div", { className: "overview", style: { gridTemplateColumns: `auto repeat(${data.n_heads}, 60px)` } });
  grid.append(el("span"), ...Array.from({ length: data.n_heads }, (_, h) => el("span", { className: "axis" }, `head ${h}`)));
  data.attention.forEach((heads, l) => {
    grid.append(el("span", { className: "axis" }, `layer ${l}`));
    heads.forEach((matrix, h) => {
      const canvas = el("canvas", { width: 56, height: 56, "data-layer": l, "data-head": h,
        className: l === layer && h === head ? "selected" : "", title: `layer ${l} · head ${h}`,
        onclick: () => select({ layer: l, head: h }) });
      drawSmall(canvas, matrix);
      grid.append(canvas);
    });
  });
  $("attn-overview").replaceChildren(grid);
  drawHeatmap($("attn-heatmap"), data.attention[layer][head], data.tokens, data.tokens);
  $("cross-box").hidden = !data.cross_attention;
  $("image-attn-box").hidden = !data.image;
  if (data.image) drawImageAttention(data.image, data.attention[layer][head][selectedToken()]);
  if (data.cross_attention) drawHeatmap($("cross-heatmap"), data.cross_attention[layer][head], data.tokens, data.source.tokens);
  $("encoder-box").hidden = !data.encoder_attention;
  if (data.encoder_attention) drawEncoderAttention();
}

function drawEncoderAttention() {  // the source read by the encoder: its layer picked here, the head as selected
  const { data, head } = state, layers = $("encoder-layer"), n = data.encoder_attention.length;
  if (layers.options.length !== n) {
    layers.replaceChildren(...Array.from({ length: n }, (_, i) => new Option(`${i}`, i)));
    layers.onchange = drawEncoderAttention;
  }
  const tokens = data.source.tokens;
  drawHeatmap($("encoder-heatmap"), data.encoder_attention[Number(layers.value)][head], tokens, tokens, null);
}

function drawImageAttention(image, row) {  // the digit in grey, the selected query's weights on its patches in orange
  const canvas = $("attn-image"), ctx = canvas.getContext("2d"), n = image.pixels.length, px = canvas.width / n;
  image.pixels.forEach((line, y) => line.forEach((v, x) => {
    const g = Math.round(255 * (1 - v));
    ctx.fillStyle = `rgb(${g},${g},${g})`;
    ctx.fillRect(x * px, y * px, Math.ceil(px), Math.ceil(px));
  }));
  const patches = row.slice(1), top = Math.max(...patches) || 1, side = image.patch_size * px;
  patches.forEach((w, p) => {
    ctx.fillStyle = `rgba(217,72,15,${0.8 * Math.sqrt(w)})`;  // absolute, square-root scale like the heatmaps
    ctx.fillRect((p % image.grid) * side, Math.floor(p / image.grid) * side, side, side);
  });
  $("image-attn-note").textContent = `weight on the class token: ${fmt(row[0])}; on patches up to ${fmt(top)} ` +
    `(orange: opacity 0.8 \u221aweight)`;
  canvas.dataset.weights = JSON.stringify(patches);
}

function drawHeatmap(svg, matrix, rowTokens, colTokens, t = selectedToken()) {  // rows: queries, columns: keys;
  // labels on both axes, the query row t outlined (none when t is null)
  const n = Math.max(rowTokens.length, colTokens.length), cell = Math.max(9, Math.min(24, Math.floor(960 / n)));
  const margin = 64, width = margin + colTokens.length * cell, height = margin + rowTokens.length * cell;
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const font = Math.min(12, cell - 1);
  rowTokens.forEach((token, i) => {
    svg.appendChild(svgEl("text", { x: margin - 4, y: margin + i * cell + cell * 0.75, class: "row-label",
                                    "text-anchor": "end", "font-size": font }, show(token)));
  });
  colTokens.forEach((token, j) => {
    const x = margin + j * cell + cell * 0.7;
    svg.appendChild(svgEl("text", { x, y: margin - 4, class: "col-label", "font-size": font,
                                    transform: `rotate(-60 ${x} ${margin - 4})` }, show(token)));
  });
  matrix.forEach((row, i) => row.forEach((w, j) => {
    svg.appendChild(svgEl("rect", { x: margin + j * cell, y: margin + i * cell, width: cell, height: cell,
                                    fill: heat(w), "data-w": w }));
  }));
  if (t === null) return;
  svg.appendChild(svgEl("rect", { x: margin, y: margin + t * cell, width: colTokens.length * cell, height: cell,
                                  fill: "none", stroke: "#d9480f", "stroke-width": 2, class: "row-highlight" }));
}

// --- feed-forward ---------------------------------------------------------------------------------

function drawMlpNorms() {
  const norms = state.data.mlp_norm[state.layer], top = Math.max(...norms) || 1, t = selectedToken();
  $("mlp-norms").replaceChildren(...state.data.tokens.map((token, i) => el("span", {
    className: `token${i === t ? " selected" : ""}`, style: { background: heat(norms[i] / top) },
    "data-value": norms[i], title: `RMS of the activations: ${fmt(norms[i], 4)}`, onclick: () => select({ token: i }),
  }, show(token), el("small", { textContent: fmt(norms[i], 2) }))));
}

function drawMlpUnits() {
  const m = state.detail.mlp, d = state.detail;
  const top = Math.max(...m.units.map((u) => Math.abs(u[1]))) || 1;
  $("mlp-units").replaceChildren(
    el("p", { className: "stats" }, `token ${d.token} \u201c${show(d.tokens[d.token])}\u201d: most active of ${m.d_ff} units in layer ${d.layer}`),
    ...m.units.map(([unit, value]) => el("div", { className: "bar unit", "data-unit": unit, "data-value": value },
      el("span", { className: "label" }, `unit ${unit}`),
      el("span", { className: "track" }, el("span", { className: value < 0 ? "neg" : "q",
        style: { width: `${(100 * Math.abs(value)) / top}%` } })),
      el("span", {}, fmt(value)))));
  const all = m.values.flat().map(Math.abs), scale = Math.max(...all) || 1;
  const header = el("tr", {}, el("th", {}, "token"), ...m.overall.map((u) => el("th", {}, `unit ${u}`)));
  const rows = d.tokens.map((token, i) => el("tr", { className: i === d.token ? "selected" : "" },
    el("td", { className: "mono" }, `${i} ${show(token)}`),
    ...m.values[i].map((v) => el("td", { className: "num", "data-value": v, style: { background: diverging(v, scale) } }, fmt(v, 2)))));
  $("mlp-table").replaceChildren(header, ...rows);
}

// --- residual stream ------------------------------------------------------------------------------

function drawLens() {
  const { data } = state, t = selectedToken();
  const header = el("tr", {}, el("th", {}, "after"), ...data.tokens.map((token, i) =>
    el("th", { className: `mono${i === t ? " selected" : ""}` }, show(token))));
  const rows = data.lens.map((positions, l) => el("tr", { className: l === state.layer ? "selected" : "", "data-layer": l },
    el("th", {}, `layer ${l}`),
    ...positions.map((top, i) => el("td", {
      className: `mono lens${i === t ? " selected" : ""}`, style: { background: heat(top[0].p) }, "data-p": top[0].p,
      title: top.map((c) => `${show(c.token)} ${pct(c.p)}`).join("  "),
    }, show(top[0].token)))));
  $("lens-table").replaceChildren(header, ...rows);
}

// --- probabilities and sampling ---------------------------------------------------------------------

function drawNext() {
  const { next, cutoff } = state.data, top = Math.max(...next.map((n) => Math.max(n.p, n.p_temperature, n.p_sampled)));
  const filters = [`temperature ${cutoff.temperature}`, cutoff.top_k ? `top-k ${cutoff.top_k}` : "top-k off",
                   cutoff.top_p ? `top-p ${cutoff.top_p}` : "top-p off"].join(" · ");
  const where = state.data.task === "fill-mask"
    ? `fill-mask at token ${state.data.position} “${show(state.data.tokens[state.data.position])}”`
    : state.data.task === "classify" ? `the digit's class (read from CLS; labelled ${state.data.image.label})`
    : `next token after token ${state.data.position}`;
  $("cutoff").textContent = `${where} · ${filters}: sampling keeps ${cutoff.kept} of ${cutoff.vocab_size} tokens ` +
    `(cut-off at ${pct(cutoff.min_kept_p_temperature)} after temperature)`;
  const bars = [];
  next.forEach((n, i) => {
    if (i > 0 && next[i - 1].kept && !n.kept) bars.push(el("div", { className: "cutline" }, "\u2014 cut-off \u2014"));
    bars.push(el("div", { className: `bar${n.kept ? "" : " cut"}`, "data-id": n.id, "data-p": n.p,
                         "data-p-sampled": n.p_sampled },
      el("span", { className: "label" }, show(n.token)),
      el("span", { className: "track" },
        el("span", { className: "p", style: { width: `${(100 * n.p) / top}%` } }),
        el("span", { className: "t", style: { width: `${(100 * n.p_temperature) / top}%` } }),
        el("span", { className: "q", style: { width: `${(100 * n.p_sampled) / top}%` } })),
      el("span", { className: "value" }, `${pct(n.p)} \u2192 ${pct(n.p_temperature)} \u2192 ${pct(n.p_sampled)}`)));
  });
  $("next").replaceChildren(...bars);
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

async function sampleContinuation() {
  try {
    const asked = options();
    const result = await call("/api/generate", asked);
    const out = $("continuation"), start = (result.truncated && result.truncated.start) || 0;
    out.replaceChildren();
    if (start) {  // the part of the text the model did not see
      out.appendChild(el("del", { title: result.truncated.message }, slice(asked.text, 0, start)));
    }
    out.appendChild(document.createTextNode(slice(asked.text, start)));
    out.appendChild(el("mark", {}, result.continuation));
    $("sampled-tokens").replaceChildren(...result.tokens.map((token, i) => el("span", {
      className: "token", style: { background: hue(i) }, "data-id": result.ids[i],
    }, show(token), el("small", { textContent: `${result.ids[i]}` }))));
    showTruncation($("continuation-truncated"), result.truncated, asked.text);
    $("error").textContent = "";
  } catch (err) { $("error").textContent = err.message; }
}

// --- requests ---------------------------------------------------------------------------------------

let inspecting = 0;
async function inspect() {
  const ticket = ++inspecting;
  try {
    const detail = await call("/api/inspect", { ...inputs(), layer: state.layer, head: state.head, token: selectedToken() });
    if (ticket !== inspecting) return;  // a newer selection is on its way
    state.detail = detail;
    drawEmbeddingVectors(); drawQkv(); drawMlpUnits(); drawEmbeddingMap();
    document.body.dataset.ready = `${state.layer}/${state.head}/${selectedToken()}`;
  } catch (err) { $("error").textContent = err.message; }
}

let analysing = 0;
async function analyze() {
  const ticket = ++analysing;
  try {
    const asked = options();
    const data = await call("/api/analyze", asked);
    if (ticket !== analysing) return;
    state.data = data;
    if (data.image) $("image-label").textContent = `digit ${data.image.index}, labelled ${data.image.label}`;
    showTruncation($("truncated"), data.truncated, asked.text);
    state.layer = Math.min(state.layer, data.n_layers - 1);
    state.head = Math.min(state.head, data.n_heads - 1);
    if (state.token !== null && state.token >= data.tokens.length) state.token = null;
    $("error").textContent = "";
    drawNext();
    select();
  } catch (err) { $("error").textContent = err.message; }
}

let pending = null;
function analyzeSoon() { clearTimeout(pending); pending = setTimeout(() => { analyze(); tokenize(); }, 250); }

async function start() {
  const info = await call("/api/info");
  state.info = info;
  const m = info.model;
  $("model-info").textContent = `${m.arch} · ${m.n_layers} layers · ${m.n_heads} heads · d_model ${m.d_model} · ` +
    `${m.pos} positions · ${m.norm} norm · ${m.ffn} · vocabulary ${info.vocab_size} · context ${m.max_len}`;
  $("text").value = info.default_text;
  if (m.arch === "encoder") {
    $("sample").disabled = true;
    $("continuation-truncated").textContent = "an encoder fills in masked tokens ([MASK] or <mask> in the text) " +
      "instead of continuing a text: see the probabilities";
  }
  if (m.arch === "vit") {
    $("sample").disabled = true;
    $("continuation-truncated").textContent = "a ViT classifies images: its prediction is in the probabilities";
    $("image-box").hidden = false;
    $("image-index").max = info.n_images - 1;
    $("image-index").oninput = analyzeSoon;
  }
  if (m.arch === "encoder-decoder") {
    $("continuation-truncated").textContent = "the decoder continues the start of the target while it reads the source";
    $("source-box").hidden = false;
    $("source").value = info.default_source;
    $("source").oninput = analyzeSoon;
  }
  $("new-tokens").max = info.max_new_tokens;
  $("new-tokens").value = Math.min(Number($("new-tokens").value), info.max_new_tokens);
  $("tokenizer").replaceChildren(...info.tokenizers.map((name) =>
    new Option(name === "model" ? "the model's own" : name, name)));
  $("text").oninput = analyzeSoon;
  for (const id of ["temperature", "top-p"]) {
    $(id).oninput = () => { $(`${id}-out`).textContent = $(id).value; analyzeSoon(); };
  }
  $("top-k").oninput = analyzeSoon;
  $("layer").onchange = () => select({ layer: Number($("layer").value) });
  $("head").onchange = () => select({ head: Number($("head").value) });
  $("token-slider").oninput = () => select({ token: Number($("token-slider").value) });
  $("tokenizer").onchange = tokenize;
  $("sample").onclick = sampleContinuation;
  await Promise.all([analyze(), tokenize()]);
}
start().catch((err) => { $("error").textContent = err.message; });
