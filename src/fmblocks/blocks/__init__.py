"""Blocks 2-7 of the lecture: positions, token mixers (attention and its efficient cores, long
convolutions, Hyena), feed-forward, norms, the residual block.

    POSITIONS  every positional scheme by name ("learned", "sinusoidal", "rope", "alibi", "none")
    MIXERS     every token mixer by name ("attention", "long-conv", "hyena")
    ATTENTION_CORES  the attention mixer's cores ("sdpa", "math", "chunked", "sparse", "sliding-window",
                     "linear", "flex")

Importing the package registers them all.
"""

from fmblocks.blocks import efficient, flex, hyena, long_conv  # noqa: F401  (register their cores and mixers)
from fmblocks.blocks.attention import ATTENTION_CORES
from fmblocks.blocks.mixers import MIXERS
from fmblocks.blocks.positional import POSITIONS

__all__ = ["ATTENTION_CORES", "MIXERS", "POSITIONS"]
