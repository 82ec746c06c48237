"""Conversion between the two homes of a model: a Hugging Face directory and an fmblocks run directory.

    convert("hf-dir", "runs/imported")     HF -> run: RUN/checkpoint/ (config.json, model.safetensors,
                                           trainer_state.json at step 0) + RUN/tokenizer.json (fmblocks format)
    convert("runs/tiny", "hf-dir")         run -> HF: config.json + model.safetensors that transformers
                                           loads, + tokenizer.json when the tokenizer can be exported

The direction follows the source (`sources.source_kind`). The destination must not exist or be an empty
directory; everything is written into a hidden sibling and renamed into place at the end, so a failed
conversion leaves nothing half-written under DST. The HF config.json is kept in the run's trainer_state.json
("hf_config"), so converting back writes the same architecture and fields (token ids, labels). The weights
are the same numbers: an HF checkpoint in another dtype (bf16, fp16) becomes a float32 run (exact), as runs
are float32.
`convert` returns notes for the reader: what was written, and what could not be (a tokenizer without
an export to tokenizer.json, a BertModel's missing masked-LM head, a ViT without a tokenizer).
Limits: a converted run starts at step 0 with no optimizer state: `fmblocks train --resume` cannot
continue it; one weights file is written (no sharding).
"""

import os
import shutil
from pathlib import Path

import torch

from fmblocks.errors import CheckpointError
from fmblocks.files import unique_sibling, write_errors
from fmblocks.models.sources import open_model, source_kind

TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG = "hf_config"  # trainer_state.json field: the config.json a converted run came from (sources.py)


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Write the model (and tokenizer) of `src` at `dst` in the other format; returns notes (see above)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst} already exists and is not an empty directory; choose another destination")
    kind = source_kind(src)
    model, tokenizer = open_model(src, need_tokenizer=False)
    with write_errors(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = unique_sibling(dst, prefix="partial-")
        partial.mkdir()
    try:
        notes = _to_run(model, tokenizer, src, partial) if kind == "hf" else _to_hf(model, tokenizer, src, partial)
        with write_errors(dst):
            os.replace(partial, dst)  # an empty directory at dst is replaced too
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return notes


def _to_run(model: torch.nn.Module, tokenizer: object, src: Path, out: Path) -> list[str]:
    from fmblocks.training.checkpoint import CHECKPOINT_DIR, save_checkpoint

    notes = []
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        model = model.float()
        notes.append(f"weights cast from {str(dtype).removeprefix('torch.')} to float32 (exactly; runs are float32)")
    state = {"step": 0, "history": [], "converted_from": str(src.resolve()), HF_CONFIG: model.hub_config}
    save_checkpoint(out / CHECKPOINT_DIR, model=model, state=state, model_config=model.config)
    names = [f"{CHECKPOINT_DIR}/"]
    if tokenizer is not None:
        tokenizer.save(out / TOKENIZER_FILE)
        names.append(TOKENIZER_FILE)
    else:
        notes.append(f"no tokenizer fmblocks can read in {src}: the run has the model only (add a {TOKENIZER_FILE}, "
                     "or pass --tokenizer to the commands that read it)")
    fresh = [n for n in getattr(model, "hub_fresh", ()) if n.startswith("mlm_head.")]
    if fresh:
        notes.append("this checkpoint has no masked-LM head: the run's head is freshly initialised (untrained)")
    classes = ", ".join(model.hub_config.get("architectures") or [model.hub_arch])
    return [f"wrote an fmblocks run ({', '.join(names)}) of the {classes} model", *notes]


def _to_hf(model: torch.nn.Module, tokenizer: object, src: Path, out: Path) -> list[str]:
    from fmblocks.models.hub import save_pretrained
    from fmblocks.models.hub.loader import arch_of, read_config
    from fmblocks.training.checkpoint import read_state

    original = read_state(src).get(HF_CONFIG)
    if isinstance(original, dict):  # a run converted from HF: the same architecture and config fields back
        model.hub_arch, model.hub_config = arch_of(original).name, original
    written = save_pretrained(model, out, tokenizer=tokenizer)
    classes = read_config(out).get("architectures") or []
    notes = [f"wrote a Hugging Face {', '.join(classes)} directory ({', '.join(written)})"]
    if tokenizer is None:
        notes.append("the run has no tokenizer: the directory holds the model only")
    elif TOKENIZER_FILE not in written:
        notes.append(f"the run's {tokenizer.kind} tokenizer has no export to {TOKENIZER_FILE} yet: the directory "
                     "holds the model only (put the original tokenizer files beside it)")
    return notes
