"""Hugging Face model directories in and out: `from_pretrained(path)`, `save_pretrained(model, path)`.

    from fmblocks.models import from_pretrained, save_pretrained
    model = from_pretrained("path/to/hf-dir")      # GPT-2, Llama, Mistral, Qwen2, BERT, ESM-2, ViT
    save_pretrained(model, "out")                  # transformers' from_pretrained("out") gives the same logits
    save_pretrained(model, "out", tokenizer=tok)   # + tokenizer.json when tok.to_hf() exists

One module per architecture (gpt2, llama, mistral, qwen2, bert, esm, vit), each its weight-name map as data and
its config translation; loader.py holds what they share. Importing the package registers them all.
"""

from fmblocks.models.hub import bert, esm, gpt2, llama, mistral, qwen2, vit  # noqa: F401  (register the architectures)
from fmblocks.models.hub.loader import (ARCHITECTURES, HubArch, Weight, from_pretrained, hf_tokenizer_document,
                                        hub_state_dict, save_pretrained)

__all__ = ["ARCHITECTURES", "HubArch", "Weight", "from_pretrained", "hf_tokenizer_document", "hub_state_dict",
           "save_pretrained"]
