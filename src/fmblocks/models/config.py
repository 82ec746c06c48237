"""ModelConfig: one typed dataclass naming every block of a model by string; presets are data.

    config = preset("gpt2-style", n_layers=2, d_model=64, n_heads=4, d_ff=256, vocab_size=100, max_len=64)
    config.save("config.json"); ModelConfig.load("config.json") == config

Fields (the names are the team contract):
  arch           "decoder" (GPT), "encoder" (BERT/ESM), "encoder-decoder" (Transformer), "vit"
  vocab_size, d_model, n_layers, n_heads, d_ff, max_len   sizes; max_len = longest sequence (ViT: patches + 1)
  pos            a scheme in fmblocks.blocks.POSITIONS: "learned" | "sinusoidal" (added to the embeddings) |
                 "rope" | "alibi" (inside attention) | "none"; `pos_options` its options (rope: base,
                 which defaults to `rope_base`). With "sinusoidal" the token embeddings are scaled by
                 sqrt(d_model), as in Vaswani et al.
  norm           "layer" | "rms";  norm_first: pre-norm (GPT-2, Llama) or post-norm (BERT, original Transformer)
                 Pre-norm stacks end with a final norm; post-norm stacks normalise the embeddings instead.
  ffn            "mlp" | "swiglu" | "geglu";  activation: "relu" | "gelu" | "gelu_tanh" | "silu" (for "mlp")
  mixer          the token mixer of every layer, a name in fmblocks.blocks.MIXERS ("attention" | "long-conv" | "hyena"),
                 or a list of names cycled over the layers (["long-conv", "attention"] alternates them)
  mixer_options  the mixer's options, e.g. {"window": 8} for attention with the sparse core; with a list
                 of mixers, a dict per mixer name: {"attention": {"window": 8}}
  attention      the core of attention mixers (and cross-attention): "sdpa" | "math" | "chunked" | "sparse" |
                 "sliding-window" | "linear"; its options are the attention mixer's options
  n_kv_heads     grouped-query attention (None = n_heads)
  bias           biases in the blocks' linear layers (attention projections, feed-forward) and the encoder's
                 MLM head; LayerNorm always keeps its bias (RMSNorm has none), the ViT's patch embedding and
                 head always have one, the decoders' lm_head never
  qkv_bias       biases on the attention q/k/v projections only (None = as `bias`; Qwen2: True with bias False)
  dropout, eps, rope_base, tie_embeddings (output projection shares the token embedding matrix)
  type_vocab_size  BERT segment embeddings (0 = none)
  token_dropout  encoders: ESM-2's token dropout, the id of the mask token whose embeddings are zeroed, the
                 others rescaled by (1 - 0.12) / (1 - the row's observed mask ratio) (None = off)
  n_classes, image_size, patch_size, channels   ViT classification
  n_decoder_layers encoder-decoder: decoder depth (0 = same as n_layers)

Limits: component names and options are checked against the block registries at construction (the
positions and mixers are built once on the meta device), so a config naming a block or an option that
is not registered fails with ConfigError listing the known ones.
"""

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from fmblocks.configs import check_fields, config_from_dict
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
    mixer: str | tuple[str, ...] = "attention"
    mixer_options: dict = field(default_factory=dict)
    pos_options: dict = field(default_factory=dict)
    n_kv_heads: int | None = None
    bias: bool = True
    qkv_bias: bool | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    eps: float = 1e-5
    rope_base: float = 10000.0
    type_vocab_size: int = 0
    token_dropout: int | None = None
    n_classes: int = 0
    image_size: int = 0
    patch_size: int = 0
    channels: int = 1
    n_decoder_layers: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.mixer, list):  # JSON gives lists; keep the config immutable and comparable
            object.__setattr__(self, "mixer", tuple(self.mixer))
        check_fields(self)
        _check_values(self)
        _check_names(self)
        _check_options(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def layer_mixers(self, n_layers: int) -> list[str]:
        """The mixer name of each of n_layers layers (a list of mixers is cycled)."""
        names = (self.mixer,) if isinstance(self.mixer, str) else self.mixer
        return [names[i % len(names)] for i in range(n_layers)]

    def options_for(self, mixer: str) -> dict[str, Any]:
        """The options of `mixer` (flat mixer_options for a single mixer; per name for a list)."""
        if isinstance(self.mixer, str):
            return dict(self.mixer_options) if mixer == self.mixer else {}
        return dict(self.mixer_options.get(mixer, {}))

    def mixer_spec(self) -> Any:
        """The sizes and core every mixer of this model is built from (a fmblocks.blocks.mixers.MixerSpec)."""
        from fmblocks.blocks.mixers import MixerSpec

        return MixerSpec(self.d_model, self.n_heads, n_kv_heads=self.n_kv_heads, max_len=self.max_len,
                         bias=self.bias, qkv_bias=self.qkv_bias, dropout=self.dropout, core=self.attention)

    def build_positions(self, max_len: int | None = None) -> Any:
        """The position scheme of this model (over max_len positions, default config.max_len)."""
        from fmblocks.blocks.positional import POSITIONS, build_positions

        options = dict(self.pos_options)
        if "base" in POSITIONS.get(self.pos).option_names():
            options.setdefault("base", self.rope_base)
        return build_positions(self.pos, max_len=max_len or self.max_len, d_model=self.d_model,
                               n_heads=self.n_heads, **options)

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
        return ModelConfig.from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mixer"] = self.mixer if isinstance(self.mixer, str) else list(self.mixer)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return config_from_dict(cls, data)

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
    # HyenaDNA (tiny): single-nucleotide tokens (the dna-kmer tokenizer with k=1: 5 specials + ACGTN), Hyena mixers
    # of order 2 instead of attention (no position scheme: the filters are functions of the lag), 1k context.
    "hyena-dna": dict(arch="decoder", vocab_size=10, d_model=128, n_layers=2, n_heads=1, d_ff=512, max_len=1024,
                      pos="none", norm="layer", norm_first=True, ffn="mlp", activation="gelu", bias=True,
                      tie_embeddings=True, eps=1e-5, mixer="hyena", mixer_options={"order": 2, "filter_hidden": 64}),
    # Laptop sizes, ~0.8M parameters, that learn in minutes on a CPU (docs/training.md): the blocks of gpt2-style
    # and llama-style at 4 layers, d=128, context 128. vocab_size 256 fits bytes or characters; `fmblocks train`
    # sets the tokenizer's.
    "gpt2-tiny": dict(arch="decoder", vocab_size=256, d_model=128, n_layers=4, n_heads=4, d_ff=512, max_len=128,
                      pos="learned", norm="layer", norm_first=True, ffn="mlp", activation="gelu_tanh", bias=True,
                      tie_embeddings=True, eps=1e-5),
    "llama-tiny": dict(arch="decoder", vocab_size=256, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=352,
                       max_len=128, pos="rope", norm="rms", norm_first=True, ffn="swiglu", activation="silu",
                       bias=False, tie_embeddings=False, eps=1e-5, rope_base=10000.0),
    # A ViT sized for 28x28 MNIST digits: 16 patches of 7x7, class token, pre-norm.
    "vit-tiny": dict(arch="vit", vocab_size=0, d_model=64, n_layers=4, n_heads=4, d_ff=128, max_len=17,
                     image_size=28, patch_size=7, channels=1, n_classes=10, pos="learned", norm="layer",
                     norm_first=True, ffn="mlp", activation="gelu", bias=True, eps=1e-6),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset `name` with `overrides` applied; unknown name -> UnknownNameError listing the presets."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})


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
    from fmblocks.blocks.attention import check_heads

    check_heads(c.d_model, c.n_heads, c.n_kv_heads)
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
    if c.token_dropout is not None and (c.arch != "encoder" or not 0 <= c.token_dropout < c.vocab_size):
        raise ConfigError(f"token_dropout (the mask token id) needs arch 'encoder' and an id in [0, {c.vocab_size}), "
                          f"got arch {c.arch!r}, token_dropout={c.token_dropout}")
    if not isinstance(c.mixer, str) and not c.mixer:
        raise ConfigError("mixer must name at least one mixer")


def _check_names(c: ModelConfig) -> None:
    """Every named component must be registered in its block registry."""
    import fmblocks.blocks as blocks
    from fmblocks.blocks.feedforward import ACTIVATIONS, FEEDFORWARDS
    from fmblocks.blocks.norms import NORMS

    choices = {"pos": blocks.POSITIONS, "norm": NORMS, "ffn": FEEDFORWARDS, "activation": ACTIVATIONS,
               "attention": blocks.ATTENTION_CORES}
    for name, registry in choices.items():
        if getattr(c, name) not in registry:
            raise ConfigError(f"unknown {name} {getattr(c, name)!r}; known: {', '.join(registry.names())}")
    for mixer in c.layer_mixers(len(c.mixer) if isinstance(c.mixer, tuple) else 1):
        if mixer not in blocks.MIXERS:
            raise ConfigError(f"unknown mixer {mixer!r}; known: {', '.join(blocks.MIXERS.names())}")


def _check_options(c: ModelConfig) -> None:
    """Build the position scheme and each mixer once on the meta device: bad options fail here, by name."""
    import torch

    from fmblocks.blocks.mixers import build_mixer

    if not isinstance(c.mixer, str):
        stray = sorted(set(c.mixer_options) - set(c.mixer))
        bad = [name for name, value in c.mixer_options.items() if not isinstance(value, dict)]
        if stray or bad:
            raise ConfigError("with a list of mixers, mixer_options maps each mixer's name to its options; "
                              f"got keys {sorted(c.mixer_options)} for mixers {list(c.mixer)}")
    with torch.device("meta"):
        scheme = c.build_positions()
        for mixer in dict.fromkeys(c.layer_mixers(len(c.mixer) if isinstance(c.mixer, tuple) else 1)):
            build_mixer(mixer, c.mixer_spec(), positional=scheme, **c.options_for(mixer))
