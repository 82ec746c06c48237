"""A tokenizer as HF `tokenizers` builds one: named stages, each plain data, run in order.

    text --added tokens--> segments --normalizer--> --pre-tokenizer--> pieces --model--> ids
         --post-processor--> framed ids;        ids --> token strings --decoder--> text

    added tokens    cut out of the raw text first (those marked `normalized` out of the normalised
                    text), leftmost and longest first; a *special* one is refused with TokenizerError
                    unless `allowed_special` names it (or is "all"), as everywhere in fmblocks
    normalizer, pre_tokenizer   pipeline_normalize.py          (dicts in tokenizer.json's schema)
    model           BPE with pair ranks and byte fallback (bpe_pairs.py) or Unigram (unigram.py)
    post_processor, decoder     pipeline_decode.py

This is the kind `load(directory)` returns for a tokenizer.json that the older, faster kinds do not
cover (Llama-2/3, Mistral, Qwen2, T5-style Unigram, files of HF's trainers), and the one
`train_unigram` returns. `to_dict()` is the tokenizer.json document itself, so `save_tokenizer_json`
(hf_export.py) writes it unchanged. Not lossless in general: normalisers and Metaspace change text
(a leading space, "▁" in the text, unknown tokens).
Limits: added tokens with `single_word`; truncation and padding (refused by hf.py).
"""

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import regex
import torch

from fmblocks.errors import ConfigError, CorruptFileError, TokenizerError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_ids
from fmblocks.tokenizers.bpe_pairs import PairBPE
from fmblocks.tokenizers.pipeline_decode import DECODERS, POST_PROCESSORS, check_stage, decode_tokens, post_process
from fmblocks.tokenizers.pipeline_normalize import check_normalizer, check_pre_tokenizer, normalize, pre_tokenize
from fmblocks.tokenizers.unigram import Unigram

MODELS: dict[str, type[PairBPE] | type[Unigram]] = {"BPE": PairBPE, "Unigram": Unigram}
ADDED_DEFAULTS = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


@TOKENIZERS.register("pipeline")
class PipelineTokenizer(Tokenizer):
    """normalizer -> pre_tokenizer -> model -> post_processor, and decoder (see the module docstring)."""

    kind = "pipeline"
    lossless = False

    def __init__(self, model: PairBPE | Unigram, *, normalizer: dict | None = None, pre_tokenizer: dict | None = None,
                 post_processor: dict | None = None, decoder: dict | None = None,
                 added_tokens: Sequence[dict[str, Any]] = ()) -> None:
        check_normalizer(normalizer)
        check_pre_tokenizer(pre_tokenizer)
        check_stage(post_processor, POST_PROCESSORS, "post-processor", "processors")
        check_stage(decoder, DECODERS, "decoder", "decoders")
        self.model, self.normalizer, self.pre_tokenizer = model, normalizer, pre_tokenizer
        self.post_processor, self.decoder = post_processor, decoder
        self.added_tokens = [{**ADDED_DEFAULTS, **token} for token in added_tokens]
        for token in self.added_tokens:
            if not (isinstance(token.get("content"), str) and token["content"] and isinstance(token.get("id"), int)
                    and token["id"] >= 0):
                raise ConfigError(f"an added token needs a non-empty 'content' and an id >= 0, got {token}")
            if token["single_word"]:
                raise ConfigError(f"added token {token['content']!r} has single_word=True, which is not supported")
        self._added_ids = {t["id"]: t["content"] for t in self.added_tokens}
        self._specials = {t["content"]: t["id"] for t in self.added_tokens if t["special"]}
        self._added = {t["content"]: t for t in self.added_tokens}
        self._raw = _matcher([t for t in self.added_tokens if not t["normalized"]])
        self._normalized = _matcher([t for t in self.added_tokens if t["normalized"]])
        self._size = max([*model.id_to_token, *self._added_ids], default=-1) + 1

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def unk_id(self) -> int | None:
        """The model's unknown token id (None when it has none)."""
        if isinstance(self.model, Unigram):
            return self.model.unk_id
        return None if self.model.unk_token is None else self.model.vocab[self.model.unk_token]

    def id_to_token(self, i: int) -> str:
        return self._added_ids.get(i) or self.model.id_to_token[i]

    # -- encoding -----------------------------------------------------------------------------------
    def encode(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
               allowed_special: Iterable[str] | Literal["all"] = frozenset()) -> list[int]:
        """Token ids of `text` (and `pair`), framed by the post-processor unless add_special_tokens=False."""
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        first = self._encode_one(text, allowed)
        second = None if pair is None else self._encode_one(pair, allowed)
        if add_special_tokens:
            return post_process(self.post_processor, first, second)
        return first + (second or [])

    def _encode_one(self, text: str, allowed: set[str]) -> list[int]:
        if not isinstance(text, str):
            raise TokenizerError(f"{self.kind} tokenizer encodes str, got {type(text).__name__}")
        ids: list[int] = []
        for start, segment, added in self._cut(self._raw, text, allowed):
            if added is not None:
                ids.append(added)
                continue
            normalized = normalize(self.normalizer, segment)
            for inner_start, piece, inner_added in self._cut(self._normalized, normalized, allowed):
                if inner_added is not None:
                    ids.append(inner_added)
                    continue
                first = start == 0 and inner_start == 0
                for word in pre_tokenize(self.pre_tokenizer, [piece], first=first):
                    ids += self.model.tokenize(word)
        return ids

    def _cut(self, matcher: "regex.Pattern[str] | None", text: str, allowed: set[str]
             ) -> list[tuple[int, str, int | None]]:
        """(start, text, None) for the plain stretches and (start, match, id) for each added token."""
        if matcher is None:
            return [(0, text, None)]
        out: list[tuple[int, str, int | None]] = []
        end = 0
        while (match := matcher.search(text, end)) is not None:
            token = self._added[match[0]]
            if token["special"] and token["content"] not in allowed:
                raise TokenizerError(f"text contains the special token {token['content']!r} at character "
                                     f"{match.start()}; pass allowed_special={{{token['content']!r}}} or "
                                     f"'all' to encode it as id {token['id']}")
            start, stop = match.span()
            while token["lstrip"] and start > end and text[start - 1].isspace():
                start -= 1  # lstrip/rstrip: the token also takes the whitespace beside it
            while token["rstrip"] and stop < len(text) and text[stop].isspace():
                stop += 1
            if start > end:
                out.append((end, text[end:start], None))
            out.append((start, text[start:stop], token["id"]))
            end = stop
        if end < len(text) or not out:
            out.append((end, text[end:], None))
        return out

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of `ids` by the decoder; special tokens kept unless skip_special_tokens."""
        tokens = []
        for position, i in enumerate(check_ids(ids, self._size)):
            token = self._added_ids.get(i)
            if token is None:
                token = self.model.id_to_token.get(i)
                if token is None:
                    raise TokenizerError(f"token id {i} at position {position} is unused in this vocabulary")
            elif skip_special_tokens and token in self._specials:
                continue
            tokens.append(token)
        return decode_tokens(self.decoder, tokens)

    # -- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The tokenizer.json document (HF `tokenizers`' schema, without truncation and padding)."""
        return {"added_tokens": self.added_tokens, "normalizer": self.normalizer, "pre_tokenizer": self.pre_tokenizer,
                "post_processor": self.post_processor, "decoder": self.decoder, "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> "PipelineTokenizer":
        kind = data["model"].get("type")
        if kind not in MODELS:
            raise TokenizerError(f"tokenizer model {kind!r} is not supported in a pipeline; supported: "
                                 f"{', '.join(MODELS)}")
        try:
            model = MODELS[kind].from_dict(data["model"])
        except ConfigError as err:
            raise CorruptFileError(f"malformed {kind} model ({err})") from None
        return cls(model, normalizer=data.get("normalizer"), pre_tokenizer=data.get("pre_tokenizer"),
                   post_processor=data.get("post_processor"), decoder=data.get("decoder"),
                   added_tokens=data.get("added_tokens", []))


def _matcher(tokens: list[dict[str, Any]]) -> "regex.Pattern[str] | None":
    """One regex for the contents of `tokens`, longest first, so the leftmost-longest match wins (HF's rule)."""
    if not tokens:
        return None
    contents = sorted({t["content"] for t in tokens}, key=len, reverse=True)
    return regex.compile("|".join(map(regex.escape, contents)))
