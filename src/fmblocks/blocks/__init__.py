"""Blocks 2-7 of the lecture: positions, attention (exact and efficient), feed-forward, norms, the block.

Importing the package registers every attention core ("sdpa", "math", "chunked", "sparse", "linear").
"""

from fmblocks.blocks import efficient  # noqa: F401  (registers the efficient attention cores)
