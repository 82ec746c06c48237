"""The stages after the model in a tokenizer.json pipeline: post-processor (ids -> framed ids) and
decoder (token strings -> text). Plain data, dicts in HF `tokenizers`' schema, as in pipeline_normalize.py:

    post-processors  TemplateProcessing {single, pair, special_tokens}  (Llama's "<s> $A", BERT's framing)
                     BertProcessing {cls, sep}, RobertaProcessing {cls, sep}, ByteLevel (ids unchanged),
                     Sequence {processors}
    decoders         ByteLevel (printable chars -> bytes -> UTF-8), Metaspace ("▁" -> " ", none in the first token),
                     Replace {pattern, content}, ByteFallback ("<0xE2><0x82><0xAC>" -> "€"), Fuse,
                     Strip {content, start, stop}, WordPiece {prefix, cleanup}, Sequence {decoders}

A decoder maps the list of token strings to a list of strings that are then concatenated; without a
decoder HF joins the tokens with single spaces, and so do we. Invalid UTF-8 becomes U+FFFD: once per
byte in ByteFallback, once per maximal invalid sequence in ByteLevel (HF's `from_utf8_lossy`).
"""

from collections.abc import Callable
from typing import Any

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers.pipeline_normalize import _compiled
from fmblocks.tokenizers.pretokenize import char_to_byte

Stage = dict[str, Any]


# -- post-processors --------------------------------------------------------------------------------
def _template(stage: Stage, first: list[int], second: list[int] | None) -> list[int]:
    ids: list[int] = []
    for item in stage["single" if second is None else "pair"]:
        if "Sequence" in item:
            ids += first if item["Sequence"]["id"] == "A" else second or []
        else:
            ids += stage["special_tokens"][item["SpecialToken"]["id"]]["ids"]
    return ids


def _bert(stage: Stage, first: list[int], second: list[int] | None) -> list[int]:
    cls, sep = stage["cls"][1], stage["sep"][1]
    return [cls, *first, sep] + ([] if second is None else [*second, sep])


def _roberta(stage: Stage, first: list[int], second: list[int] | None) -> list[int]:
    cls, sep = stage["cls"][1], stage["sep"][1]
    return [cls, *first, sep] + ([] if second is None else [sep, *second, sep])


def _sequence(stage: Stage, first: list[int], second: list[int] | None) -> list[int]:
    framing = [s for s in stage["processors"] if s["type"] != "ByteLevel"]
    if len(framing) > 1:
        raise TokenizerError("a Sequence post-processor with more than one framing step is not supported")
    return post_process(framing[0] if framing else None, first, second)


POST_PROCESSORS: dict[str, Callable[[Stage, list[int], list[int] | None], list[int]]] = {
    "TemplateProcessing": _template,
    "BertProcessing": _bert,
    "RobertaProcessing": _roberta,
    "ByteLevel": lambda _, a, b: a + (b or []),
    "Sequence": _sequence,
}


def post_process(stage: Stage | None, first: list[int], second: list[int] | None = None) -> list[int]:
    """The ids of one text (and of a pair's second text) framed by the post-processor `stage`."""
    if stage is None:
        return first + (second or [])
    return POST_PROCESSORS[stage["type"]](stage, first, second)


# -- decoders ---------------------------------------------------------------------------------------
def _byte_level(_: Stage, tokens: list[str]) -> list[str]:
    data = bytearray()
    for token in tokens:
        try:
            data += bytes(char_to_byte[c] for c in token)
        except KeyError:  # a character outside GPT-2's byte map: HF keeps the token's own UTF-8
            data += token.encode("utf-8")
    return [data.decode("utf-8", errors="replace")]


def _metaspace(stage: Stage, tokens: list[str]) -> list[str]:
    mark, scheme = stage.get("replacement", "\u2581"), stage.get("prepend_scheme", "always")
    out = [token.replace(mark, " ") for token in tokens]
    if out and scheme != "never":
        out[0] = tokens[0].replace(mark, "")  # HF drops every mark of the first token, not only a leading one
    return out


def byte_token(token: str) -> int | None:
    """The byte of a byte-fallback token "<0xNN>", else None.

    >>> byte_token("<0xE2>"), byte_token("<0xg1>")
    (226, None)
    """
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return int(token[3:5], 16)
        except ValueError:
            return None
    return None


def _byte_fallback(_: Stage, tokens: list[str]) -> list[str]:
    out: list[str] = []
    pending = bytearray()
    for token in [*tokens, ""]:
        byte = byte_token(token)
        if byte is not None:
            pending.append(byte)
            continue
        if pending:
            try:
                out.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                out += ["\ufffd"] * len(pending)
            pending = bytearray()
        out.append(token)
    return out[:-1]


def _strip(stage: Stage, tokens: list[str]) -> list[str]:
    content, start, stop = stage["content"], stage.get("start", 0), stage.get("stop", 0)
    out = []
    for token in tokens:
        begin = 0
        while begin < min(start, len(token)) and token[begin] == content:
            begin += 1
        end = len(token)
        while len(token) - end < stop and end > begin and token[end - 1] == content:
            end -= 1
        out.append(token[begin:end])
    return out


def _wordpiece(stage: Stage, tokens: list[str]) -> list[str]:
    prefix = stage.get("prefix", "##")
    out = []
    for i, token in enumerate(tokens):
        if i and token.startswith(prefix):
            token = token[len(prefix):]
        elif i:
            token = " " + token
        if stage.get("cleanup", True):
            token = _cleanup(token)
        out.append(token)
    return out


def _cleanup(text: str) -> str:
    """HF's `cleanup` of WordPiece output: no space before punctuation, English contractions joined."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


def _decode_sequence(stage: Stage, tokens: list[str]) -> list[str]:
    for inner in stage["decoders"]:
        tokens = DECODERS[inner["type"]](inner, tokens)
    return tokens


DECODERS: dict[str, Callable[[Stage, list[str]], list[str]]] = {
    "ByteLevel": _byte_level,
    "Metaspace": _metaspace,
    "Replace": lambda s, t: [_compiled(s["pattern"]).sub(lambda _: s["content"], x) for x in t],
    "ByteFallback": _byte_fallback,
    "Fuse": lambda _, t: ["".join(t)],
    "Strip": _strip,
    "WordPiece": _wordpiece,
    "Sequence": _decode_sequence,
}


def decode_tokens(stage: Stage | None, tokens: list[str]) -> str:
    """The text of `tokens` (the token strings of some ids) by the decoder `stage`."""
    if stage is None:
        return " ".join(tokens)
    return "".join(DECODERS[stage["type"]](stage, tokens))


def check_stage(stage: Stage | None, known: dict, what: str, nested: str) -> None:
    """TokenizerError naming a post-processor or decoder type (or nested one) that is not supported."""
    if stage is None:
        return
    kind = stage.get("type") if isinstance(stage, dict) else None
    if kind not in known:
        raise TokenizerError(f"{what} {kind!r} is not supported; supported: {', '.join(known)}")
    for inner in stage.get(nested, []) if kind == "Sequence" else []:
        check_stage(inner, known, what, nested)
