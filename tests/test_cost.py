"""Cost: formulas by hand, formulas against the built modules and torch's FlopCounterMode, the CLI."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fmblocks.blocks.attention import MultiHeadAttention
from fmblocks.cli import main
from fmblocks.cost import (
    BlockSpec,
    attention_costs,
    block_costs,
    block_table,
    model_costs,
    model_table,
    render,
)
from fmblocks.errors import ConfigError
from fmblocks.models import build_model, preset

SMALL = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_len=20)
BLOCKS = {
    "mlp": BlockSpec(32, 4, 64),
    "gqa": BlockSpec(32, 8, 64, n_kv_heads=2),
    "swiglu-rms-no-bias": BlockSpec(48, 6, 80, n_kv_heads=3, ffn="swiglu", norm="rms", bias=False),
    "geglu": BlockSpec(24, 3, 40, ffn="geglu"),
    "cross": BlockSpec(32, 4, 64, cross_attention=True, d_context=20),
    "one-head": BlockSpec(16, 1, 16),
}
MODELS = {
    "gpt2": preset("gpt2-style", **SMALL),
    "gpt2-untied": preset("gpt2-style", **SMALL, tie_embeddings=False),
    "llama": preset("llama-style", **SMALL, n_kv_heads=2),
    "bert": preset("bert-style", **SMALL),
    "transformer": preset("transformer-base", **SMALL, n_decoder_layers=3),
    "alibi-post-norm": preset("gpt2-style", **SMALL, pos="alibi", norm_first=False, ffn="geglu"),
    "vit": preset("vit-tiny", n_layers=2),
}


def component(rows, name):
    (row,) = [r for r in rows if r.component == name]
    return row


def test_hand_worked_tiny_block() -> None:
    """d=4, h=2 (dh=2), f=8, T=3, B=1, MLP, LayerNorm, biases.

    norm1, norm2      2·4 = 8 parameters each, 0 FLOPs
    q/k/v/o_proj      4·4 + 4 = 20 parameters each;  2·(B·T=3)·4·4 = 96 FLOPs each
    attn (core)       Q K^T: 2·B·h·T·S·dh = 2·1·2·3·3·2 = 72;  A V: 72;  together 144
    ffn.fc_in         4·8 + 8 = 40 parameters;  2·3·4·8 = 192 FLOPs
    ffn.fc_out        8·4 + 4 = 36 parameters;  2·3·8·4 = 192 FLOPs
    total             8 + 4·20 + 8 + 40 + 36 = 172 parameters;  4·96 + 144 + 2·192 = 912 FLOPs
    """
    costs = {c.component: (c.params, c.flops) for c in block_costs(BlockSpec(4, 2, 8), 3)}
    assert costs == {
        "norm1": (8, 0), "attn.q_proj": (20, 96), "attn.k_proj": (20, 96), "attn.v_proj": (20, 96),
        "attn": (0, 144), "attn.o_proj": (20, 96), "norm2": (8, 0), "ffn.fc_in": (40, 192), "ffn.fc_out": (36, 192),
    }
    total = component(block_table(BlockSpec(4, 2, 8), 3).rows, "total")
    assert (total.params_formula, total.params_measured) == (172, 172)
    assert (total.flops_formula, total.flops_measured) == (912, 912)


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16])
def test_attention_parameters_do_not_depend_on_the_head_count(heads: int) -> None:
    d = 64
    formula = sum(c.params for c in attention_costs("attn", d, heads, 10))
    measured = sum(p.numel() for p in MultiHeadAttention(d, heads).parameters())
    assert formula == measured == 4 * d * d + 4 * d


def test_grouped_query_heads_shrink_keys_and_values() -> None:
    """K and V map d to g·dh = d·g/h: with d=64, h=8, g=2 that is 64·16 (+16) each."""
    costs = {c.component: c.params for c in attention_costs("attn", 64, 8, 10, n_kv_heads=2)}
    assert costs["attn.k_proj"] == costs["attn.v_proj"] == 64 * 16 + 16
    assert sum(p.numel() for p in MultiHeadAttention(64, 8, n_kv_heads=2).parameters()) == sum(costs.values())


@pytest.mark.parametrize("name", BLOCKS)
def test_block_formula_matches_the_module_and_the_flop_counter(name: str) -> None:
    spec = BLOCKS[name]
    kwargs = {"context_len": 7} if spec.cross_attention else {}
    rows = block_table(spec, 9, batch=2, **kwargs).rows
    for row in rows:
        assert row.params_formula == row.params_measured, row
        assert row.flops_formula == pytest.approx(row.flops_measured, rel=0.01), row


@pytest.mark.parametrize("name", MODELS)
def test_model_formula_matches_the_model_and_the_flop_counter(name: str) -> None:
    config = MODELS[name]
    seq_len = None if config.arch == "vit" else 11
    rows = model_table(config, seq_len, batch=2).rows
    for row in rows:
        assert row.params_formula == row.params_measured, row
        assert row.flops_formula == pytest.approx(row.flops_measured, rel=0.01), row
    # the totals, counted again straight from torch without the per-module bookkeeping
    model = build_model(config.replace(attention="math")).eval()
    batch = ({"images": torch.rand(2, 1, 28, 28)} if config.arch == "vit" else
             {"input_ids": torch.zeros(2, 11, dtype=torch.long)})
    if config.arch == "encoder-decoder":
        batch["decoder_input_ids"] = batch["input_ids"]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**batch)
    total = component(rows, "total")
    assert total.params_formula == sum(p.numel() for p in model.parameters())
    assert total.flops_formula == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_tied_embeddings_are_counted_once() -> None:
    tied, untied = (component(model_table(MODELS[n], 11).rows, "total") for n in ("gpt2", "gpt2-untied"))
    assert untied.params_measured - tied.params_measured == SMALL["vocab_size"] * SMALL["d_model"]
    assert untied.flops_measured == tied.flops_measured


def test_attention_core_grows_with_the_square_of_the_length() -> None:
    def flops(t: int) -> dict[str, int]:
        return {c.component: c.flops for c in block_costs(BlockSpec(32, 4, 64), t)}

    short, long = flops(8), flops(16)
    assert long["attn"] == 4 * short["attn"]
    assert long["attn.q_proj"] == 2 * short["attn.q_proj"] and long["ffn.fc_in"] == 2 * short["ffn.fc_in"]


def test_cross_attention_keys_and_values_scale_with_the_context() -> None:
    spec = BlockSpec(32, 4, 64, cross_attention=True)
    a, b = ({c.component: c.flops for c in block_costs(spec, 8, context_len=s)} for s in (5, 10))
    assert b["cross_attn.k_proj"] == 2 * a["cross_attn.k_proj"] and b["cross_attn"] == 2 * a["cross_attn"]
    assert b["cross_attn.q_proj"] == a["cross_attn.q_proj"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: BlockSpec(64, 5, 128),  # d_model not divisible by heads
        lambda: BlockSpec(64, 4, 128, n_kv_heads=3),  # kv heads do not divide heads
        lambda: BlockSpec(64, 0, 128),
        lambda: BlockSpec(64, 4, 128, ffn="moe"),
        lambda: BlockSpec(64, 4, 128, norm="batch"),
        lambda: BlockSpec(64, 4, 128, d_context=32),  # context width without cross-attention
        lambda: block_costs(BlockSpec(64, 4, 128), 0),
        lambda: block_costs(BlockSpec(64, 4, 128), 8, context_len=4),
        lambda: model_costs(MODELS["gpt2"], SMALL["max_len"] + 1),
        lambda: model_costs(MODELS["vit"], 10),
        lambda: model_costs(MODELS["gpt2"], 8, context_len=4),
    ],
)
def test_bad_input_raises_config_error(make) -> None:
    with pytest.raises(ConfigError):
        make()


def test_render_lists_every_component_with_formulas() -> None:
    text = render(block_table(BlockSpec(4, 2, 8), 3, measured=False))
    assert "B=1  T=3  d=4  h=2  g=2  dh=2  f=8" in text
    assert "d·d + d | 2·BT·d·d" in text and "QK^T 2·BhT²·dh" in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[:5] == ["total", "172", "-", "912", "-"]


def test_cli_one_block(capsys: pytest.CaptureFixture) -> None:
    assert main(["cost", "--d-model", "4", "--heads", "2", "--d-ff", "8", "--seq-len", "3"]) == 0
    total = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total"))
    assert total.split()[:6] == ["total", "172", "172", "912", "912", "0"]


def test_cli_preset_with_overrides(capsys: pytest.CaptureFixture) -> None:
    args = ["--d-model", "32", "--heads", "4", "--kv-heads", "2", "--d-ff", "48"]
    assert main(["cost", "--preset", "llama-style", *args, "--seq-len", "8"]) == 0
    out = capsys.readouterr().out
    expected = model_table(preset("llama-style", d_model=32, n_heads=4, n_kv_heads=2, d_ff=48), 8, measured=False)
    assert f"{component(expected.rows, 'total').params_formula:,}" in out
    assert "stack.layers.*.ffn.w_gate" in out and "decoder model, 30 layers" in out


def test_cli_config_file(tmp_path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "model.json"
    MODELS["bert"].save(path)
    assert main(["cost", "--config", str(path), "--seq-len", "6", "--formula-only"]) == 0
    out = capsys.readouterr().out
    assert "mlm_head.out" in out and "embed.token_types" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["cost", "--d-model", "64", "--heads", "5", "--seq-len", "8"],
        ["cost", "--d-model", "64"],
        ["cost", "--preset", "no-such-model"],
        ["cost", "--config", "does-not-exist.json"],
    ],
)
def test_cli_bad_input_exits_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("fmblocks cost: error:")


CONV_MIXERS = {"long-conv": ("long-conv", {}, False), "hybrid": (["long-conv", "attention", "attention"], {}, False),
               "hyena": ("hyena", {}, False), "hyena-bias": ("hyena", {}, True),
               "hyena-hybrid": (["hyena", "attention", "hyena"],
                                {"hyena": {"order": 3, "filter_hidden": 8, "filter_features": 7, "short_kernel": 4}},
                                False)}


@pytest.mark.parametrize(("mixer", "options", "bias"), CONV_MIXERS.values(), ids=list(CONV_MIXERS))
def test_long_conv_and_hybrid_formulas_equal_measurement(mixer, options, bias) -> None:
    config = preset("llama-style", vocab_size=61, d_model=32, n_heads=4, n_kv_heads=2, n_layers=3, d_ff=48, max_len=24,
                    mixer=mixer, mixer_options=options, bias=bias)
    table = model_table(config, 16)
    for row in table.rows:
        assert row.params_formula == row.params_measured, row
        assert row.flops_formula == row.flops_measured, row


def test_qkv_biases_alone_are_counted() -> None:
    config = preset("llama-style", vocab_size=61, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=48, max_len=24,
                    qkv_bias=True)
    for row in model_table(config, 8).rows:
        assert (row.params_formula, row.flops_formula) == (row.params_measured, row.flops_measured), row
