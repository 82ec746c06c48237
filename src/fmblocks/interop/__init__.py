"""Models from anywhere: a Hugging Face directory or an fmblocks run, opened or converted one into the other.

    from fmblocks.interop import convert, open_model
    model, tokenizer = open_model("path/to/hf-dir-or-run")
    convert("hf-dir", "run-dir")                      # and back

This layer sits above models (fmblocks.models.hub reads and writes HF directories) and training (which
owns the run format), so neither of those imports it.
"""

from fmblocks.interop.convert import convert
from fmblocks.interop.sources import open_model

__all__ = ["convert", "open_model"]
