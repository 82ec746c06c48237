"""ModelConfig: one typed dataclass naming every block of a model by string; presets are data.

    config = preset("gpt2-style", n_layers=2, d_model=64, n_heads=4, d_ff=256, vocab_size=100, max_len=64)
    config.save("config.json"); ModelConfig.load("config.json") == config

Fields (the names are the team contract):
  arch           "decoder" (GPT), "encoder" (BERT/ESM), "encoder-decoder" (Transformer), "vit"
  vocab_size, d_model, n_layers, n_heads, d_ff, max_len   sizes; max_len = longest sequence (ViT: patches + 1)
  pos            "learned" | "sinusoidal" (added to the embeddings) | "rope" | "alibi" (inside attention) | "none"
                 With "sinusoidal" the token embeddings are scaled by sqrt(d_model), as in Vaswani et al.
  norm           "layer" | "rms";  norm_first: pre-norm (GPT-2, Llama) or post-norm (BERT, original Transformer)
                 Pre-norm stacks end with a final norm; post-norm stacks normalise the embeddings instead.
  ffn            "mlp" | "swiglu" | "geglu";  activation: "relu" | "gelu" | "gelu_tanh" | "silu" (for "mlp")
  attention      the attention core: "sdpa" | "math" | "chunked" | "sparse" | "linear"
  n_kv_heads     grouped-query attention (None = n_heads)
  bias           biases in the blocks' linear layers (attention projections, feed-forward) and the encoder's
                 MLM head; LayerNorm always keeps its bias (RMSNorm has none), the ViT's patch embedding and
                 head always have one, the decoders' lm_head never
  dropout, eps, rope_base, tie_embeddings (output projection shares the token embedding matrix)
  type_vocab_size  BERT segment embeddings (0 = none)
  n_classes, image_size, patch_size, channels   ViT classification
  n_decoder_layers encoder-decoder: decoder depth (0 = same as n_layers)

Limits: component names are checked against the block registries, so a config naming a block that
is not registered fails at construction with ConfigError listing the known names.
"""

import dataclasses
import os
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from fmblocks.errors import ConfigError, CorruptFileError, UnknownNameError
from fmblocks.files import read_json, write_json

FILE_FORMAT = "fmblocks-model-config"
FILE_VERSION = 1
ARCHS = ("decoder", "encoder", "encoder-decoder", "vit")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model; validated on construction (ConfigError)."""

    arch: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int
    pos: str = "learned"
    norm: str = "layer"
    norm_first: bool = True
    ffn: str = "mlp"
    activation: str = "gelu"
    attention: str = "sdpa"
    n_kv_heads: int | None = None
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    eps: float = 1e-5
    rope_base: float = 10000.0
    type_vocab_size: int = 0
    n_classes: int = 0
    image_size: int = 0
    patch_size: int = 0
    channels: int = 1
    n_decoder_layers: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)
        _check_names(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def decoder_layers(self) -> int:
        """Depth of the decoder stack of an encoder-decoder."""
        return self.n_decoder_layers or self.n_layers

    @property
    def n_patches(self) -> int:
        """ViT: number of P x P patches per image."""
        return (self.image_size // self.patch_size) ** 2 if self.patch_size else 0

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A validated copy with some fields changed."""
        _check_known(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        _check_known(data)
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise ConfigError(f"model config lacks required fields {missing}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config atomically as versioned JSON."""
        write_json(path, {"config": self.to_dict()}, fmt=FILE_FORMAT, version=FILE_VERSION)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelConfig":
        document = read_json(path, fmt=FILE_FORMAT, max_version=FILE_VERSION)
        if not isinstance(document.get("config"), dict):
            raise CorruptFileError(f"{path}: model config file lacks a 'config' object")
        return cls.from_dict(document["config"])


# Presets: plain data, sizes of the published models they are named after (override to shrink).
PRESETS: dict[str, dict[str, Any]] = {
    # GPT-2 small: learned positions, pre-norm LayerNorm, GELU (tanh form) MLP, tied embeddings.
    "gpt2-style": dict(arch="decoder", vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_ff=3072,
                       max_len=1024, pos="learned", norm="layer", norm_first=True, ffn="mlp",
                       activation="gelu_tanh", bias=True, tie_embeddings=True, eps=1e-5),
    # Llama architecture at small (~135M) sizes: RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases, untied head.
    "llama-style": dict(arch="decoder", vocab_size=32000, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3,
                        d_ff=1536, max_len=2048, pos="rope", norm="rms", norm_first=True, ffn="swiglu",
                        activation="silu", bias=False, tie_embeddings=False, eps=1e-5, rope_base=10000.0),
    # BERT-base: learned positions + token types, post-norm LayerNorm (eps 1e-12), GELU, masked-LM head.
    "bert-style": dict(arch="encoder", vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072,
                       max_len=512, pos="learned", type_vocab_size=2, norm="layer", norm_first=False, ffn="mlp",
                       activation="gelu", bias=True, tie_embeddings=True, eps=1e-12),
    # ESM-2 (8M): a protein encoder with RoPE, pre-norm LayerNorm, GELU, a 33-token amino-acid vocabulary.
    "esm-style": dict(arch="encoder", vocab_size=33, d_model=320, n_layers=6, n_heads=20, d_ff=1280,
                      max_len=1026, pos="rope", norm="layer", norm_first=True, ffn="mlp", activation="gelu",
                      bias=True, tie_embeddings=True, eps=1e-5),
    # Original Transformer (base): sinusoidal positions, post-norm, ReLU MLP, cross-attention.
    "transformer-base": dict(arch="encoder-decoder", vocab_size=37000, d_model=512, n_layers=6, n_heads=8,
                             d_ff=2048, max_len=512, pos="sinusoidal", norm="layer", norm_first=False, ffn="mlp",
                             activation="relu", bias=True, tie_embeddings=True, eps=1e-5),
    # A ViT sized for 28x28 MNIST digits: 16 patches of 7x7, class token, pre-norm.
    "vit-tiny": dict(arch="vit", vocab_size=0, d_model=64, n_layers=4, n_heads=4, d_ff=128, max_len=17,
                     image_size=28, patch_size=7, channels=1, n_classes=10, pos="learned", norm="layer",
                     norm_first=True, ffn="mlp", activation="gelu", bias=True, eps=1e-6),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset `name` with `overrides` applied; unknown name -> UnknownNameError listing the presets."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    data = {**PRESETS[name], **overrides}
    _check_known(data)
    return ModelConfig(**data)


def _check_known(data: dict[str, Any]) -> None:
    known = [f.name for f in fields(ModelConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown model config fields {unknown}; known: {', '.join(known)}")


def _check_types(config: ModelConfig) -> None:
    hints = typing.get_type_hints(ModelConfig)
    for field in fields(config):
        value, allowed = getattr(config, field.name), typing.get_args(hints[field.name]) or (hints[field.name],)
        if not any(_is_a(value, kind) for kind in allowed):
            names = " | ".join("None" if kind is type(None) else kind.__name__ for kind in allowed)
            raise ConfigError(f"model config field {field.name} must be {names}, got {value!r}")


def _is_a(value: Any, kind: type) -> bool:
    """isinstance, except that a bool is no int and an int is a fine float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _check_values(c: ModelConfig) -> None:
    if c.arch not in ARCHS:
        raise ConfigError(f"unknown arch {c.arch!r}; known: {', '.join(ARCHS)}")
    for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_len"):
        if getattr(c, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(c, name)}")
    for name in ("type_vocab_size", "n_classes", "n_decoder_layers"):
        if getattr(c, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(c, name)}")
    if c.arch != "vit" and c.vocab_size < 1:
        raise ConfigError(f"vocab_size must be >= 1 for arch {c.arch!r}, got {c.vocab_size}")
    if c.d_model % c.n_heads:
        raise ConfigError(f"d_model ({c.d_model}) must be divisible by n_heads ({c.n_heads})")
    if c.n_kv_heads is not None and (c.n_kv_heads < 1 or c.n_heads % c.n_kv_heads):
        raise ConfigError(f"n_kv_heads ({c.n_kv_heads}) must be >= 1 and divide n_heads ({c.n_heads})")
    if c.pos == "rope" and c.head_dim % 2:
        raise ConfigError(f"rope needs an even head dimension, got d_model/n_heads = {c.head_dim}")
    if not 0.0 <= c.dropout < 1.0:
        raise ConfigError(f"dropout must lie in [0, 1), got {c.dropout}")
    if c.eps <= 0 or c.rope_base <= 0:
        raise ConfigError(f"eps and rope_base must be > 0, got eps={c.eps}, rope_base={c.rope_base}")
    if c.arch == "vit":
        if c.image_size < 1 or c.patch_size < 1 or c.image_size % c.patch_size:
            raise ConfigError(
                f"vit needs image_size divisible by patch_size (both >= 1), got {c.image_size} and {c.patch_size}")
        if c.n_classes < 1 or c.channels < 1:
            raise ConfigError(f"vit needs n_classes >= 1 and channels >= 1, got {c.n_classes} and {c.channels}")
        if c.max_len < c.n_patches + 1:
            raise ConfigError(f"vit max_len ({c.max_len}) must hold {c.n_patches} patches + the class token")
        if c.pos not in ("learned", "sinusoidal"):
            raise ConfigError(f"vit supports pos 'learned' or 'sinusoidal', got {c.pos!r}")


def _check_names(c: ModelConfig) -> None:
    """Every named component must be registered in its block registry."""
    from fmblocks.blocks.attention import ATTENTION_CORES
    from fmblocks.blocks.feedforward import ACTIVATIONS, FEEDFORWARDS
    from fmblocks.blocks.norms import NORMS
    from fmblocks.blocks.positional import POSITION_KINDS

    try:
        import fmblocks.blocks.efficient  # noqa: F401  (registers its attention cores)
    except ModuleNotFoundError as err:  # written by another helper; the "sdpa" and "math" cores suffice
        if err.name != "fmblocks.blocks.efficient":
            raise
    choices = {"pos": list(POSITION_KINDS), "norm": NORMS.names(), "ffn": FEEDFORWARDS.names(),
               "activation": ACTIVATIONS.names(), "attention": ATTENTION_CORES.names()}
    for name, known in choices.items():
        if getattr(c, name) not in known:
            raise ConfigError(f"unknown {name} {getattr(c, name)!r}; known: {', '.join(known)}")
