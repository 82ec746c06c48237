"""Parameters and forward FLOPs of the building blocks, by formula and by measurement.

Notation: B batch, T query length, S key/value length (S = T in self-attention, the context length in
cross-attention), d = d_model, h heads, g key/value heads (grouped-query attention, g divides h),
dh = d/h the head size, dc the context width, f = d_ff, V vocabulary, P max_len, L layers.

Parameters (weights + biases; `bias=False` drops the biases of the linear layers):

    linear d_in -> d_out            d_in·d_out (+ d_out)
    Q, O projections                d·d (+ d) each
    K, V projections                dc·g·dh (+ g·dh) each;  self-attention with g = h: d·d (+ d)
    multi-head self-attention       4·d² (+ 4·d) whatever h: the h heads split the d output columns of
                                    W_q, W_k, W_v (and the d input rows of W_o) into h slices of width
                                    dh = d/h, so h·(d·dh) = d·d per projection. Grouped-query heads
                                    shrink K and V to d·(g·dh) = d·(d·g/h) each.
    MLP                             d·f + f·d (+ f + d)
    gated MLP (SwiGLU, GeGLU)       3·d·f (+ 2·f + d)
    LayerNorm 2·d (weight, bias), RMSNorm d; the blocks' norms keep their bias whatever `bias` says.

Forward FLOPs follow torch.utils.flop_counter.FlopCounterMode: only matrix products count, 2·m·n·k for an
(m, k) @ (k, n) product (one multiply and one add per term). Bias adds, norms, softmax, activations,
masks, RoPE, ALiBi and embedding look-ups count 0. Hence:

    linear on N token vectors       2·N·d_in·d_out
    scores Q K^T                    2·B·h·T·S·dh   (the T·S term: quadratic in length for self-attention)
    weighted sum A V                2·B·h·T·S·dh
    LM head                         2·B·T·d·V

Causal masking does not halve the count: the whole T x S score matrix is computed (a flash kernel would
skip about half of it; the counter's formula for fused attention also counts all of it). Softmax, about
5·B·h·T·S elementwise operations, is excluded, as the counter excludes it.

Measurement: parameters are counted from the built modules (a shared tensor once, so tied embeddings
count once, under the embedding); FLOPs by FlopCounterMode on one forward pass (no grad), per module.
The modules are built with the plain "math" attention core: the counter has no formula for PyTorch's
fused CPU attention kernel and would report 0 for it. Components are module paths; a module's own
share is its count minus its submodules' (e.g. "attn" alone = Q K^T + A V). Layers are summed into
`layers.*` rows.

Mixers: each layer's mixer is costed by its formula in MIXER_COSTS ("attention"; "long-conv": in_proj
d·2d, a kernel of d·P taps, out_proj d·d, and an FFT convolution the counter does not count; "hyena" of
order N with filter MLP width M and F positional features: in_proj d·(N+1)d, a short convolution of k
taps, the filter MLP on the T lags, out_proj d·d, FFT convolutions uncounted); register
a formula there for your own mixer (without one, `model_costs` refuses the config). Positions, norms and
feed-forwards take their parameters from the block registries (`parameter_count`, `linear_shapes`).

Limits: the formulas mirror the blocks and models of fmblocks; the efficient attention cores (chunked,
sparse, sliding-window, linear) are costed as the plain core; the backward pass (about twice the forward) is not
counted; measuring runs the model once on the CPU in float32 (seconds for a GPT-2-sized model).
"""

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fmblocks.blocks import POSITIONS
from fmblocks.blocks.attention import check_heads
from fmblocks.blocks.block import TransformerBlock
from fmblocks.blocks.feedforward import FEEDFORWARDS
from fmblocks.blocks.norms import NORMS
from fmblocks.errors import ConfigError
from fmblocks.models import ModelConfig, build_model
from fmblocks.registry import Registry

MEASURE_CORE = "math"


@dataclass(frozen=True)
class Cost:
    """One component by formula: module path, parameters, FLOPs, and both formulas in symbols."""

    component: str
    params: int
    flops: int
    params_expr: str
    flops_expr: str


@dataclass(frozen=True)
class CostRow:
    """One line of a cost table: formula values next to the measured ones (None = not there)."""

    component: str
    params_formula: int | None
    params_measured: int | None
    flops_formula: int | None
    flops_measured: int | None
    formula: str = ""


@dataclass(frozen=True)
class CostTable:
    """Rows (components, then "total") with a title and the values of the symbols the formulas use."""

    title: str
    rows: list[CostRow]
    symbols: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockSpec:
    """The sizes and parts of one TransformerBlock that its cost depends on (validated: ConfigError)."""

    d_model: int
    n_heads: int
    d_ff: int
    n_kv_heads: int | None = None
    ffn: str = "mlp"
    norm: str = "layer"
    bias: bool = True
    cross_attention: bool = False
    d_context: int | None = None
    mixer: str = "attention"
    max_len: int = 0  # the context the mixer is built for (long-conv: its kernel length)
    mixer_options: dict = field(default_factory=dict)  # the mixer's options (hyena: order, filter sizes)
    qkv_bias: bool | None = None  # biases of the attention q/k/v projections (None = `bias`)

    def __post_init__(self) -> None:
        check_heads(self.d_model, self.n_heads, self.n_kv_heads)
        _check_positive(d_ff=self.d_ff)
        for what, name, registry in (("feed-forward", self.ffn, FEEDFORWARDS), ("norm", self.norm, NORMS),
                                     ("mixer", self.mixer, MIXER_COSTS)):
            if name not in registry:
                raise ConfigError(f"no cost formula for {what} {name!r}; known: {', '.join(registry.names())}")
        if self.d_context is not None:
            if not self.cross_attention:
                raise ConfigError("d_context is only used with cross_attention=True")
            _check_positive(d_context=self.d_context)


# ---------------------------------------------------------------------------------------------- formulas


def linear_cost(
    name: str, d_in: int, d_out: int, n_tokens: int, *, bias: bool, symbols: tuple[str, str, str] = ("", "", "")
) -> Cost:
    """y = x W^T (+ b) on n_tokens vectors: d_in·d_out (+ d_out) parameters, 2·n_tokens·d_in·d_out FLOPs.

    `symbols` names (d_in, d_out, n_tokens) in the formula text, e.g. ("d", "f", "BT").
    """
    i, o, n = (s or str(v) for s, v in zip(symbols, (d_in, d_out, n_tokens)))
    params_expr = f"{i}·{o}" + (f" + {o}" if bias else "")
    params = d_in * d_out + (d_out if bias else 0)
    return Cost(name, params, 2 * n_tokens * d_in * d_out, params_expr, f"2·{n}·{i}·{o}")


def norm_cost(name: str, kind: str, dim: int) -> Cost:
    """The registered norm's parameters (LayerNorm 2·d, RMSNorm d). No matrix product: 0 FLOPs."""
    params, expr = NORMS.get(kind).parameter_count(dim)
    return Cost(name, params, 0, expr, "0")


def attention_costs(
    prefix: str,
    d_model: int,
    n_heads: int,
    seq_len: int,
    *,
    context_len: int | None = None,
    d_context: int | None = None,
    n_kv_heads: int | None = None,
    bias: bool = True,
    qkv_bias: bool | None = None,
    batch: int = 1,
    length: str = "T",
) -> list[Cost]:
    """Q/K/V/O projections and the core (Q K^T, A V) of one multi-head attention layer.

    Keys and values come from a context of context_len positions and width d_context (cross-attention)
    or, by default, from the input itself (self-attention: S = T, dc = d). The core is named `prefix`
    itself: it is the attention module's own share of the FLOPs. `length` is the symbol of seq_len.
    `qkv_bias` (None = `bias`) sets the biases of Q, K, V apart from O's (Qwen2).
    """
    qkv_bias = bias if qkv_bias is None else qkv_bias
    check_heads(d_model, n_heads, n_kv_heads)
    n_kv = n_kv_heads or n_heads
    head_dim = d_model // n_heads
    s_len = seq_len if context_len is None else context_len
    d_c = d_model if d_context is None else d_context
    _check_positive(seq_len=seq_len, context_len=s_len, d_context=d_c, batch=batch)
    scores = 2 * batch * n_heads * seq_len * s_len * head_dim  # (B, h, T, dh) @ (B, h, dh, S)
    mix = 2 * batch * n_heads * seq_len * s_len * head_dim  # (B, h, T, S) @ (B, h, S, dh)
    kv, dc = ("g·dh" if n_kv != n_heads else "d"), ("dc" if d_context is not None else "d")
    src, pairs = ("S", f"{length}S") if context_len is not None else (length, f"{length}²")
    return [
        linear_cost(f"{prefix}.q_proj", d_model, d_model, batch * seq_len, bias=qkv_bias,
                    symbols=("d", "d", f"B{length}")),
        linear_cost(f"{prefix}.k_proj", d_c, n_kv * head_dim, batch * s_len, bias=qkv_bias, symbols=(dc, kv, f"B{src}")),
        linear_cost(f"{prefix}.v_proj", d_c, n_kv * head_dim, batch * s_len, bias=qkv_bias, symbols=(dc, kv, f"B{src}")),
        Cost(prefix, 0, scores + mix, "0", f"QK^T 2·Bh{pairs}·dh + AV the same"),
        linear_cost(f"{prefix}.o_proj", d_model, d_model, batch * seq_len, bias=bias, symbols=("d", "d", f"B{length}")),
    ]


def feedforward_costs(
    prefix: str, kind: str, d_model: int, d_ff: int, n_tokens: int, *, bias: bool, tokens: str = "BT"
) -> list[Cost]:
    """The registered feed-forward's linear layers (MLP: fc_in, fc_out; gated: w_gate, w_up, w_down) on
    n_tokens token vectors (symbol `tokens`)."""
    _check_positive(d_model=d_model, d_ff=d_ff, n_tokens=n_tokens)
    layers = FEEDFORWARDS.get(kind).linear_shapes(d_model, d_ff)
    sym = {d_model: "d", d_ff: "f"} if d_model != d_ff else {d_model: "d"}
    return [
        linear_cost(f"{prefix}.{name}", i, o, n_tokens, bias=bias, symbols=(sym[i], sym[o], tokens))
        for name, i, o in layers
    ]


def block_costs(
    spec: BlockSpec, seq_len: int, *, batch: int = 1, context_len: int | None = None, length: str = "T"
) -> list[Cost]:
    """Every component of one TransformerBlock, named by its module path (norm1, attn.q_proj, ...).

    `length` is the symbol of seq_len in the formula text ("S" for an encoder reading the source).
    """
    if context_len is not None and not spec.cross_attention:
        raise ConfigError("context_len is only used with cross_attention=True")
    d, n = spec.d_model, batch * seq_len
    costs = [norm_cost("norm1", spec.norm, d)]
    costs += MIXER_COSTS.get(spec.mixer)(spec, seq_len, batch, length)
    if spec.cross_attention:  # full heads: the blocks use grouped-query heads in self-attention only
        costs.append(norm_cost("norm_cross", spec.norm, d))
        costs += attention_costs("cross_attn", d, spec.n_heads, seq_len, context_len=context_len or seq_len,
                                 d_context=spec.d_context, bias=spec.bias, batch=batch,
                                 length=length)
    costs.append(norm_cost("norm2", spec.norm, d))
    costs += feedforward_costs("ffn", spec.ffn, d, spec.d_ff, n, bias=spec.bias, tokens=f"B{length}")
    return costs


def attention_mixer_costs(spec: BlockSpec, seq_len: int, batch: int, length: str) -> list[Cost]:
    """The "attention" mixer of a block: its projections and core (cores differ in cost, not in formula)."""
    return attention_costs("attn", spec.d_model, spec.n_heads, seq_len, n_kv_heads=spec.n_kv_heads, bias=spec.bias,
                           qkv_bias=spec.qkv_bias, batch=batch, length=length)


def long_conv_costs(spec: BlockSpec, seq_len: int, batch: int, length: str) -> list[Cost]:
    """The "long-conv" mixer: in_proj d -> 2d, the kernel (d·P taps), out_proj d -> d. The FFT convolution
    is not a matrix product, so it counts 0 FLOPs (as the counter counts it; about 15·B·d·T·log2(2T) real)."""
    d, n = spec.d_model, batch * seq_len
    _check_positive(max_len=spec.max_len)
    return [
        linear_cost("attn.in_proj", d, 2 * d, n, bias=spec.bias, symbols=("d", "2d", f"B{length}")),
        Cost("attn.conv", d * spec.max_len, 0, "d·P", "0"),
        linear_cost("attn.out_proj", d, d, n, bias=spec.bias, symbols=("d", "d", f"B{length}")),
    ]


def hyena_costs(spec: BlockSpec, seq_len: int, batch: int, length: str) -> list[Cost]:
    """The "hyena" mixer of order N: in_proj d -> (N+1)d, a depthwise short convolution of k taps on those
    (N+1)d channels (2·B·T·(N+1)d·k, as the counter counts a grouped conv1d), the implicit filter's MLP
    F -> M -> M -> N·d evaluated once per forward on the T lags (no batch factor; its sine frequencies 2·M
    and skips N·d are the filter's own parameters), out_proj d -> d. The FFT convolutions and the gates
    count 0 (about N·15·B·d·T·log2(2T) real operations)."""
    from fmblocks.blocks.hyena import hyena_options

    _check_positive(max_len=spec.max_len)
    o = hyena_options(**spec.mixer_options)
    d, n, order, k = spec.d_model, batch * seq_len, o["order"], o["short_kernel"]
    m, f, c = o["filter_hidden"], o["filter_features"], (o["order"] + 1) * spec.d_model
    conv_params = c * k + (c if spec.bias else 0)
    return [
        linear_cost("attn.in_proj", d, c, n, bias=spec.bias, symbols=("d", "(N+1)d", f"B{length}")),
        Cost("attn.short_conv", conv_params, 2 * n * c * k, "(N+1)d·k" + (" + (N+1)d" if spec.bias else ""),
             f"2·B{length}·(N+1)d·k"),
        Cost("attn.filter", order * d + 2 * m, 0, "N·d + 2·M", "0"),
        linear_cost("attn.filter.fc_in", f, m, seq_len, bias=True, symbols=("F", "M", length)),
        linear_cost("attn.filter.fc_hidden", m, m, seq_len, bias=True, symbols=("M", "M", length)),
        linear_cost("attn.filter.fc_out", m, order * d, seq_len, bias=False, symbols=("M", "N·d", length)),
        linear_cost("attn.out_proj", d, d, n, bias=spec.bias, symbols=("d", "d", f"B{length}")),
    ]


MixerCost = Callable[[BlockSpec, int, int, str], list[Cost]]
MIXER_COSTS: Registry[MixerCost] = Registry("mixer cost formula")
MIXER_COSTS.register("attention")(attention_mixer_costs)
MIXER_COSTS.register("long-conv")(long_conv_costs)
MIXER_COSTS.register("hyena")(hyena_costs)


def repeated(costs: list[Cost], prefix: str, n: int, symbol: str = "L") -> list[Cost]:
    """The same components in n identical layers: `prefix.*.component`, n times the parameters and FLOPs."""
    return [
        Cost(f"{prefix}.*.{c.component}", n * c.params, n * c.flops,
             f"{symbol}·({c.params_expr})" if c.params else "0", f"{symbol}·({c.flops_expr})" if c.flops else "0")
        for c in costs
    ]


def embedding_cost(name: str, rows: int, dim: int, symbol: str) -> Cost:
    """A lookup table of rows vectors of size dim: rows·dim parameters, 0 FLOPs (indexing, no product)."""
    return Cost(name, rows * dim, 0, f"{symbol}·d", "0")


def model_costs(
    config: ModelConfig, seq_len: int | None = None, *, batch: int = 1, context_len: int | None = None
) -> list[Cost]:
    """Every component of the model a ModelConfig builds, named by module path; T = seq_len (max_len).

    For "encoder-decoder" the decoder reads T = seq_len tokens and the encoder S = context_len (T).
    For "vit" the length is fixed by the image: T = patches + 1 (the class token).
    """
    t, s = _model_lengths(config, seq_len, context_len)
    _check_positive(batch=batch)
    d, n = config.d_model, batch * t
    spec = _block_spec(config)
    if config.arch == "vit":
        costs = [linear_cost("patch_embed.proj", config.channels * config.patch_size**2, d, batch * (t - 1), bias=True,
                             symbols=("C·p²", "d", "B(T-1)")),
                 Cost("cls_token", d, 0, "d", "0")]
        costs += _position_costs("positions", config, t, "T")
    else:
        costs = [embedding_cost("embed.tokens", config.vocab_size, d, "V")]
        costs += _position_costs("embed.positions", config, config.max_len, "P")
        if config.type_vocab_size:
            costs.append(embedding_cost("embed.token_types", config.type_vocab_size, d, "types"))
    if not config.norm_first:  # post-norm models normalise the embeddings
        costs.append(norm_cost("norm" if config.arch == "vit" else "embed.norm", config.norm, d))

    if config.arch == "encoder-decoder":  # the encoder reads S source tokens; the decoder cross-attends to them
        costs += _stack_costs("encoder", config, replace(spec), config.n_layers, "L", seq_len=s, batch=batch,
                              length="S")
        costs += _stack_costs("decoder", config, replace(spec, cross_attention=True), config.decoder_layers, "Ld",
                              seq_len=t, batch=batch, context_len=s)
    else:
        costs += _stack_costs("stack", config, spec, config.n_layers, "L", seq_len=t, batch=batch)

    tied = config.tie_embeddings
    if config.arch == "vit":
        costs.append(linear_cost("head", d, config.n_classes, batch, bias=True, symbols=("d", "classes", "B")))
    elif config.arch == "encoder":
        costs.append(linear_cost("mlm_head.dense", d, d, n, bias=True, symbols=("d", "d", "BT")))
        costs.append(norm_cost("mlm_head.norm", config.norm, d))
        costs.append(_head_cost("mlm_head.out", d, config.vocab_size, n, bias=True, tied=tied))
    else:
        costs.append(_head_cost("lm_head", d, config.vocab_size, n, bias=False, tied=tied))
    return costs


def _stack_costs(name: str, config: ModelConfig, spec: BlockSpec, n_layers: int, symbol: str, *, seq_len: int,
                 batch: int, length: str = "T", context_len: int | None = None) -> list[Cost]:
    """A BlockStack: its layers (each with its mixer; counts per mixer in a hybrid), then the final norm of
    pre-norm stacks."""
    mixers = config.layer_mixers(n_layers)
    block = block_costs(replace(spec, mixer=mixers[0], mixer_options=config.options_for(mixers[0])), seq_len, batch=batch, context_len=context_len, length=length)
    first = {c.component for c in MIXER_COSTS.get(mixers[0])(spec, seq_len, batch, length)}
    costs = repeated([c for c in block if c.component not in first], f"{name}.layers", n_layers, symbol)
    for mixer in dict.fromkeys(mixers):  # norms, cross-attention, feed-forward above; each mixer's own here
        count = mixers.count(mixer)
        own = MIXER_COSTS.get(mixer)(replace(spec, mixer=mixer, mixer_options=config.options_for(mixer)), seq_len,
                                     batch, length)
        costs += repeated(own, f"{name}.layers", count, symbol if count == n_layers else str(count))
    if config.norm_first:
        costs.append(norm_cost(f"{name}.final_norm", config.norm, config.d_model))
    return costs


def _head_cost(name: str, d: int, vocab: int, n_tokens: int, *, bias: bool, tied: bool) -> Cost:
    """Output projection to the vocabulary; a tied weight is the token embedding, counted there."""
    head = linear_cost(name, d, vocab, n_tokens, bias=bias, symbols=("d", "V", "BT"))
    if not tied:
        return head
    return Cost(name, vocab if bias else 0, head.flops, "V (weight tied)" if bias else "0 (tied)", head.flops_expr)


def _position_costs(name: str, config: ModelConfig, n_positions: int, symbol: str) -> list[Cost]:
    """The scheme's own parameters (learned: a table of P·d; sinusoidal is a buffer, rope/alibi/none: 0)."""
    params, expr = POSITIONS.get(config.pos).parameter_count(n_positions, config.d_model)
    if not params:
        return []
    return [Cost(f"{name}.embedding", params, 0, expr.replace("P", symbol), "0")]


def _block_spec(config: ModelConfig) -> BlockSpec:
    return BlockSpec(config.d_model, config.n_heads, config.d_ff, n_kv_heads=config.n_kv_heads, ffn=config.ffn,
                     norm=config.norm, bias=config.bias, max_len=config.max_len, qkv_bias=config.qkv_bias)


def _model_lengths(config: ModelConfig, seq_len: int | None, context_len: int | None) -> tuple[int, int]:
    """(T, S): query length and encoder/context length of a model's forward pass."""
    if config.arch == "vit":
        n = config.n_patches + 1
        if seq_len not in (None, n) or context_len is not None:
            raise ConfigError(f"a vit's sequence is fixed by the image: {config.n_patches} patches + 1 = {n}")
        return n, n
    if context_len is not None and config.arch != "encoder-decoder":
        raise ConfigError(f"context_len is only used by encoder-decoder models, not {config.arch!r}")
    t = config.max_len if seq_len is None else seq_len
    s = t if context_len is None else context_len
    for name, value in (("seq_len", t), ("context_len", s)):
        _check_positive(**{name: value})
        if value > config.max_len:
            raise ConfigError(f"{name} ({value}) exceeds the model's max_len ({config.max_len})")
    return t, s


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# ------------------------------------------------------------------------------------------- measurement


def measure(module: nn.Module, *args: object, **kwargs: object) -> dict[str, tuple[int, int]]:
    """Own (parameters, forward FLOPs) per module path, from the module and one call module(*args, **kwargs).

    Parameters are keyed by their module's path (a parameter held directly by the root by its own
    name); a module's own FLOPs are the counter's count for it minus its counted submodules'.
    Numeric path parts (layer indices) become "*", so identical layers are summed. The root's own
    share is keyed "" (nonzero only if the root multiplies matrices itself).
    """
    own: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, p in module.named_parameters():  # a shared tensor is listed once
        own[_layers(name.rpartition(".")[0] or name)][0] += p.numel()
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    totals = {
        path.partition(".")[2]: sum(ops.values())  # "Decoder.stack.layers.0.attn" -> "stack.layers.0.attn"
        for path, ops in counter.get_flop_counts().items() if path != "Global"
    }
    for path, total in totals.items():
        own[_layers(path)][1] += total
        if path:
            own[_layers(_counted_parent(path, totals))][1] -= total
    return {path: (p, f) for path, (p, f) in own.items()}


def _counted_parent(path: str, totals: dict[str, int]) -> str:
    """The nearest enclosing module path the counter saw ("" = the root)."""
    parent = path.rpartition(".")[0]
    while parent and parent not in totals:
        parent = parent.rpartition(".")[0]
    return parent


def _layers(path: str) -> str:
    return re.sub(r"(^|\.)\d+(?=\.|$)", r"\1*", path)  # stack.layers.3.attn -> stack.layers.*.attn


# ------------------------------------------------------------------------------------------------ tables


def block_table(
    spec: BlockSpec, seq_len: int, *, batch: int = 1, context_len: int | None = None, measured: bool = True
) -> CostTable:
    """The cost table of one TransformerBlock: formula next to measurement (measured=False: formula only)."""
    costs = block_costs(spec, seq_len, batch=batch, context_len=context_len)
    found = None
    if measured:
        block = TransformerBlock(spec.d_model, spec.n_heads, spec.d_ff, norm=spec.norm, ffn=spec.ffn,
                                 cross_attention=spec.cross_attention, d_context=spec.d_context, bias=spec.bias,
                                 n_kv_heads=spec.n_kv_heads, attention=MEASURE_CORE)
        x = torch.randn(batch, seq_len, spec.d_model)
        context = None
        if spec.cross_attention:
            context = torch.randn(batch, context_len or seq_len, spec.d_context or spec.d_model)
        found = measure(block, x, context=context)
    symbols = {"B": batch, "T": seq_len, "d": spec.d_model, "h": spec.n_heads, "g": spec.n_kv_heads or spec.n_heads,
               "dh": spec.d_model // spec.n_heads, "f": spec.d_ff}
    if spec.cross_attention:
        symbols.update(S=context_len or seq_len, dc=spec.d_context or spec.d_model)
    title = f"one transformer block ({spec.ffn}, {spec.norm} norm, bias={spec.bias})"
    return CostTable(title, merge(costs, found), symbols)


def model_table(
    config: ModelConfig,
    seq_len: int | None = None,
    *,
    batch: int = 1,
    context_len: int | None = None,
    measured: bool = True,
) -> CostTable:
    """The cost table of the model a ModelConfig builds (measured=False: formula only)."""
    costs = model_costs(config, seq_len, batch=batch, context_len=context_len)
    t, s = _model_lengths(config, seq_len, context_len)
    found = None
    if measured:
        model = build_model(config.replace(attention=MEASURE_CORE, dropout=0.0))
        found = measure(model, **_dummy_batch(config, batch, t, s))
    symbols = {"B": batch, "T": t, "d": config.d_model, "h": config.n_heads, "g": config.n_kv_heads or config.n_heads,
               "dh": config.head_dim, "f": config.d_ff, "L": config.n_layers}
    if config.arch == "encoder-decoder":
        symbols.update(S=s, Ld=config.decoder_layers)
    if config.arch == "vit":
        symbols.update(C=config.channels, p=config.patch_size, classes=config.n_classes)
    else:
        symbols.update(V=config.vocab_size, P=config.max_len)
        if config.type_vocab_size:
            symbols["types"] = config.type_vocab_size
    return CostTable(f"{config.arch} model, {_describe(config)}", merge(costs, found), symbols)


def _describe(config: ModelConfig) -> str:
    return (f"{config.n_layers} layers, pos={config.pos}, {config.norm} norm, ffn={config.ffn}, bias={config.bias}, "
            f"tied={config.tie_embeddings}")


def _dummy_batch(config: ModelConfig, batch: int, t: int, s: int) -> dict[str, torch.Tensor]:
    """Inputs of the right shapes for one forward pass of the model (token 0 everywhere)."""
    if config.arch == "vit":
        return {"images": torch.zeros(batch, config.channels, config.image_size, config.image_size)}
    if config.arch == "encoder-decoder":
        return {"input_ids": torch.zeros(batch, s, dtype=torch.long),
                "decoder_input_ids": torch.zeros(batch, t, dtype=torch.long)}
    return {"input_ids": torch.zeros(batch, t, dtype=torch.long)}


def merge(costs: list[Cost], found: dict[str, tuple[int, int]] | None) -> list[CostRow]:
    """Formula rows next to measured ones (same component = same module path), plus a total row.

    A measured component without a formula, or a formula without a measured component, keeps its row
    with None on the missing side; components that are zero on both sides are left out.
    """
    absent = (None, None) if found is None else (0, 0)
    found = found or {}
    rows = []
    for c in costs:
        params, flops = found.get(c.component, absent)
        rows.append(CostRow(c.component, c.params, params, c.flops, flops, f"{c.params_expr} | {c.flops_expr}"))
    named = {c.component for c in costs}
    rows += [CostRow(path, None, p, None, f, "(no formula)") for path, (p, f) in found.items()
             if path not in named and (p or f)]
    rows = [r for r in rows if any((r.params_formula, r.params_measured, r.flops_formula, r.flops_measured))]
    total = [sum(values) for values in zip(*found.values())] if found else list(absent)
    rows.append(CostRow("total", sum(c.params for c in costs), total[0], sum(c.flops for c in costs), total[1]))
    return rows


def render(table: CostTable) -> str:
    """The table as aligned text: component, parameters and FLOPs (formula | measured), formulas in symbols."""
    head = ("component", "params formula", "params measured", "FLOPs formula", "FLOPs measured", "Δ FLOPs",
            "formula: params | FLOPs")
    lines = [[r.component, _number(r.params_formula), _number(r.params_measured), _number(r.flops_formula),
              _number(r.flops_measured), _deviation(r.flops_formula, r.flops_measured), r.formula]
             for r in table.rows]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    fmt = [str.ljust, *[str.rjust] * 5, str.ljust]
    text = [" ".join(f(cell, w) for f, cell, w in zip(fmt, row, widths)).rstrip() for row in [head, *lines]]
    text.insert(1, "-" * max(len(t) for t in text))
    text.insert(-1, text[1])
    legend = "  ".join(f"{k}={v}" for k, v in table.symbols.items())
    note = "FLOPs: forward pass, matrix products only (2·m·n·k), as torch.utils.flop_counter counts them"
    return "\n".join([table.title, legend, "", *text, "", note])


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _deviation(formula: int | None, measured: int | None) -> str:
    if formula is None or measured is None:
        return ""
    if formula == measured:
        return "0"
    return f"{(formula - measured) / measured:+.2%}" if measured else "inf"
