"""Mistral (MistralForCausalLM) checkpoints: Llama's layout and names, no biases, sliding-window attention.

`sliding_window` W (or null) becomes attention="sliding-window" with mixer_options {"window": W}: each
query sees its W most recent positions, itself included (transformers' kv > q - W), in the forward pass
and in cached decoding alike. Limits: as llama.py; the KV cache still keeps every position.
"""

from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.llama import WEIGHTS, decoder_config, decoder_fields
from fmblocks.models.hub.loader import EXACT_CORES, HubArch, register


def to_config(hf: dict) -> ModelConfig:
    window = hf.get("sliding_window")
    core = dict(attention="sliding-window", mixer_options={"window": window}) if window else {}
    return decoder_config(hf, "mistral", bias=False, **core)


def from_config(c: ModelConfig) -> dict:
    fields = decoder_fields(c, "mistral", "MistralForCausalLM", attention=(*EXACT_CORES, "sliding-window"),
                            bias=(False,), qkv_bias=(None, False))
    window = c.options_for("attention").get("window") if c.attention == "sliding-window" else None
    return {**fields, "sliding_window": window}


MISTRAL = register(HubArch("mistral", ("mistral",), "MistralForCausalLM", WEIGHTS, to_config, from_config))
