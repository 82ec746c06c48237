"""fmblocks: the building blocks of transformer foundation models, end to end.

Layout follows the lecture: `tokenizers` (1), `blocks` (2-7), `models`, `generation`, `training`,
`cost`, `apps`, `explainer`. Import submodules directly, e.g. `from fmblocks.blocks import attention`.
"""

__version__ = "0.1.0"
