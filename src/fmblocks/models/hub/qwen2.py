"""Qwen2 (Qwen2ForCausalLM) checkpoints: Llama's layout and names, biases on q/k/v only (qkv_bias=True,
bias=False). Limits: as llama.py; use_sliding_window must be false (every layer full attention).
"""

from fmblocks.errors import CheckpointError
from fmblocks.models.config import ModelConfig
from fmblocks.models.hub.llama import WEIGHTS, decoder_config, decoder_fields
from fmblocks.models.hub.loader import EXACT_CORES, HubArch, check_fixed, register


def to_config(hf: dict) -> ModelConfig:
    check_fixed(hf, {"use_sliding_window": (False,)}, "qwen2")
    if any(kind != "full_attention" for kind in hf.get("layer_types") or []):
        raise CheckpointError(f"qwen2 config field layer_types={hf['layer_types']} is not supported; "
                              "supported: every layer 'full_attention'")
    return decoder_config(hf, "qwen2", bias=False, qkv_bias=True)


def from_config(c: ModelConfig) -> dict:
    fields = decoder_fields(c, "qwen2", "Qwen2ForCausalLM", attention=EXACT_CORES, bias=(False,), qkv_bias=(True,))
    return {**fields, "use_sliding_window": False, "sliding_window": None,
            "layer_types": ["full_attention"] * c.n_layers}


QWEN2 = register(HubArch("qwen2", ("qwen2",), "Qwen2ForCausalLM", WEIGHTS, to_config, from_config))
