"""Models assembled from the blocks by a ModelConfig: decoder (GPT, Llama), encoder (BERT, ESM),
encoder-decoder (Transformer), ViT.

    from fmblocks.models import build_model, preset
    model = build_model(preset("gpt2-style", n_layers=2, d_model=64, n_heads=4, d_ff=256, max_len=64))
    out = model(input_ids, targets)        # ModelOutput(logits, loss, intermediates)

`from_pretrained(path)` / `save_pretrained(model, path)` read and write Hugging Face model directories
(fmblocks.models.hub); `open_model(path)` opens either an HF directory or an fmblocks run as (model,
tokenizer) (models/sources.py), `convert(src, dst)` turns one into the other (models/convert.py), and
`fill_mask(model, tokenizer, text)` answers masked-LM queries (models/fill_mask.py).
"""

import os

from torch import nn

from fmblocks.models.config import PRESETS, ModelConfig, preset
from fmblocks.models.decoder import Decoder
from fmblocks.models.encoder import Encoder
from fmblocks.models.encoder_decoder import EncoderDecoder
from fmblocks.models.output import ModelOutput
from fmblocks.models.vit import ViT
from fmblocks.registry import Registry
from fmblocks.models.convert import convert
from fmblocks.models.fill_mask import fill_mask
from fmblocks.models.sources import open_model

MODELS: Registry[type[nn.Module]] = Registry("model arch")
MODELS.register("decoder")(Decoder)
MODELS.register("encoder")(Encoder)
MODELS.register("encoder-decoder")(EncoderDecoder)
MODELS.register("vit")(ViT)


def build_model(config: ModelConfig) -> nn.Module:
    """The model of `config.arch`, built from the blocks the config names."""
    return MODELS.get(config.arch)(config)


def from_pretrained(path: str | os.PathLike) -> nn.Module:
    """The fmblocks model of a local Hugging Face model directory (see fmblocks.models.hub)."""
    from fmblocks.models.hub import from_pretrained as load

    return load(path)


def save_pretrained(model: nn.Module, path: str | os.PathLike, *, arch: str | None = None,
                    tokenizer: object = None) -> list[str]:
    """Write `model` (and `tokenizer` as tokenizer.json, when it can be exported) as a Hugging Face model
    directory; returns the file names written (see fmblocks.models.hub)."""
    from fmblocks.models.hub import save_pretrained as save

    return save(model, path, arch=arch, tokenizer=tokenizer)


__all__ = ["MODELS", "PRESETS", "Decoder", "Encoder", "EncoderDecoder", "ModelConfig", "ModelOutput", "ViT",
           "build_model", "convert", "fill_mask", "from_pretrained", "open_model", "preset", "save_pretrained"]
