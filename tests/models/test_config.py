"""ModelConfig: presets as data, overrides, JSON round trip, and clear errors for invalid configs."""

import json

import pytest

from fmblocks.errors import ConfigError, CorruptFileError, UnknownNameError
from fmblocks.files import write_json
from fmblocks.models.config import PRESETS, ModelConfig, preset

SMALL = dict(vocab_size=100, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=16)


def test_presets_name_the_published_blocks() -> None:
    gpt2, llama, bert = preset("gpt2-style"), preset("llama-style"), preset("bert-style")
    assert (gpt2.pos, gpt2.norm, gpt2.norm_first, gpt2.ffn, gpt2.tie_embeddings) == ("learned", "layer", True, "mlp", True)
    assert (llama.pos, llama.norm, llama.ffn, llama.bias) == ("rope", "rms", "swiglu", False)
    assert (bert.arch, bert.norm_first, bert.type_vocab_size, bert.eps) == ("encoder", False, 2, 1e-12)
    assert gpt2.head_dim == 64 and preset("vit-tiny").n_patches == 16


def test_overrides_replace_fields() -> None:
    config = preset("gpt2-style", **SMALL)
    assert config.d_model == 32 and config.pos == "learned"
    assert config.replace(pos="rope").pos == "rope"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name: str, tmp_path) -> None:
    config = preset(name)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    config.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(d_model=30), r"d_model must be divisible by n_heads; got d_model=30, n_heads=4"),
        (dict(n_kv_heads=3), r"n_heads must be divisible by n_kv_heads; got n_heads=4, n_kv_heads=3"),
        (dict(norm="batch"), r"unknown norm 'batch'; known: .*layer.*rms"),
        (dict(ffn="moe"), r"unknown ffn 'moe'; known: .*mlp.*swiglu"),
        (dict(pos="relative"), r"unknown pos 'relative'; known: alibi, learned, none, rope, sinusoidal"),
        (dict(attention="flash3"), r"unknown attention 'flash3'; known: .*sdpa"),
        (dict(arch="rnn"), r"unknown arch 'rnn'"),
        (dict(dropout=1.5), r"dropout must lie in \[0, 1\)"),
        (dict(d_model="64"), r"d_model must be int, got '64'"),
        (dict(norm_first=1), r"norm_first must be bool, got 1"),
        (dict(eps=float("nan")), r"ModelConfig.eps must be a finite float, got nan"),
        (dict(rope_base=float("inf")), r"ModelConfig.rope_base must be a finite float, got inf"),
        (dict(mixer="rnn"), r"unknown mixer 'rnn'; known: attention, hyena, long-conv"),
        (dict(mixer="hyena", mixer_options={"orders": 3}),
         r"mixer 'hyena' has no option 'orders'; known options: order, filter_hidden, filter_features, short_kernel"),
        (dict(mixer="hyena", mixer_options={"order": 0}), r"hyena option order must be a positive integer, got 0"),
        (dict(mixer="hyena", mixer_options={"filter_features": 4}), r"filter_features must be odd and >= 3"),
        (dict(mixer_options={"window": 8}), r"mixer 'attention' has no option 'window'; known options: none"),
        (dict(attention="sparse", mixer_options={"windw": 8}),
         r"mixer 'attention' has no option 'windw'; known options: window, n_global, block_size"),
        (dict(attention="sparse", mixer_options={"window": -1}), r"'sparse' needs window an integer >= 0, got -1"),
        (dict(attention="chunked", mixer_options={"block_size": 0}), r"needs block_size an integer >= 1, got 0"),
        (dict(pos="rope", pos_options={"theta": 1.0}), r"position scheme 'rope' has no option 'theta'"),
        (dict(mixer=["long-conv", "attention"], mixer_options={"window": 8}),
         r"with a list of mixers, mixer_options maps each mixer's name to its options"),
        (dict(colour="red"), r"unknown ModelConfig fields \['colour'\]"),
    ],
)
def test_invalid_configs_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset("gpt2-style", **{**SMALL, **overrides})


def test_vit_needs_whole_patches() -> None:
    with pytest.raises(ConfigError, match="image_size divisible by patch_size"):
        preset("vit-tiny", patch_size=5)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown model preset 'gpt5'; known: bert-style, esm-style, gpt2-style"):
        preset("gpt5")


def test_missing_required_field() -> None:
    data = preset("gpt2-style").to_dict()
    del data["d_model"]
    with pytest.raises(ConfigError, match=r"lacks required fields \['d_model'\]"):
        ModelConfig.from_dict(data)


def test_loading_another_kind_of_file_fails_clearly(tmp_path) -> None:
    write_json(tmp_path / "tok.json", {"kind": "bpe"}, fmt="fmblocks-tokenizer")
    with pytest.raises(CorruptFileError, match="expected a 'fmblocks-model-config' file"):
        ModelConfig.load(tmp_path / "tok.json")
