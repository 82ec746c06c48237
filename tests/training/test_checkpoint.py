"""Checkpoints: exact round trip without pickle, tied weights stored once, clear errors, atomic saves."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fmblocks.errors import CheckpointError, CorruptFileError
from fmblocks.files import read_tensors, write_tensors
from fmblocks.training import checkpoint as ckpt
from fmblocks.training.checkpoint import CorruptCheckpointError, load_checkpoint, load_optimizer, save_checkpoint
from fmblocks.training.config import TrainConfig
from fmblocks.training.trainer import build_optimizer


@pytest.fixture
def trained(tiny_config, make_model, char_ids):
    """A tiny decoder and its AdamW after one step (so the optimizer has state)."""
    model = make_model(tiny_config)
    optimizer = build_optimizer(model, TrainConfig())
    model(char_ids[None, :32], char_ids[None, 1:33]).loss.backward()
    optimizer.step()
    return model, optimizer


def save(directory: Path, model, optimizer, step: int = 1) -> Path:
    return save_checkpoint(directory / "checkpoint", model=model, optimizer=optimizer,
                           model_config=model.config, state={"step": step})


def test_round_trip_is_exact_and_stores_tied_weights_once(tmp_path, trained, make_model) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    stored = read_tensors(directory / "model.safetensors")
    assert "embed.tokens.weight" in stored and "lm_head.weight" not in stored  # tied: stored once
    loaded, config, state = load_checkpoint(tmp_path)
    assert config == model.config and state["step"] == 1 and state["format"] == "fmblocks-trainer-state"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.lm_head.weight is loaded.embed.tokens.weight

    fresh = make_model(model.config, seed=1)
    fresh_optimizer = build_optimizer(fresh, TrainConfig())
    load_optimizer(fresh_optimizer, directory)
    ours, theirs = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for index, entry in ours["state"].items():
        for key, value in entry.items():
            assert torch.equal(theirs["state"][index][key], value), (index, key)


def test_checkpoint_of_another_config_names_the_tensor_and_both_shapes(tmp_path, trained, make_model) -> None:
    model, optimizer = trained
    save(tmp_path, model, optimizer)
    wider = make_model(model.config.replace(d_model=48, d_ff=96))
    with pytest.raises(CheckpointError, match=r"embed\.tokens\.weight: checkpoint has shape \(\d+, 32\), the model expects \(\d+, 48\)"):
        ckpt.load_weights(wider, tmp_path)
    deeper = make_model(model.config.replace(n_layers=3))
    with pytest.raises(CheckpointError, match=r"stack\.layers\.2\..*missing from the checkpoint"):
        ckpt.load_weights(deeper, tmp_path)
    with pytest.raises(CheckpointError, match=r"optimizer has parameter groups of sizes"):
        load_optimizer(build_optimizer(deeper, TrainConfig()), tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.json"])
def test_truncated_files_raise_corrupt_checkpoint_error(tmp_path, trained, name: str) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    data = (directory / name).read_bytes()
    (directory / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=name) as caught:
        if name == "optimizer.safetensors":
            load_optimizer(build_optimizer(model, TrainConfig()), directory)
        else:
            load_checkpoint(directory)
    assert isinstance(caught.value, CorruptFileError) and isinstance(caught.value, CheckpointError)


def test_missing_files_and_directories_are_named(tmp_path, trained) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_crash_mid_save_leaves_the_previous_checkpoint_intact(tmp_path, trained, monkeypatch) -> None:
    model, optimizer = trained
    save(tmp_path, model, optimizer, step=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    real_write = ckpt.write_tensors

    def crash_on_optimizer(path, tensors, metadata=None):
        if Path(path).name == "optimizer.safetensors":
            raise KeyboardInterrupt("simulated crash")
        real_write(path, tensors, metadata)

    monkeypatch.setattr(ckpt, "write_tensors", crash_on_optimizer)
    with torch.no_grad():
        model.embed.tokens.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, model, optimizer, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no partial directory left
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()} == before
    assert load_checkpoint(tmp_path)[2]["step"] == 1


def test_a_crash_between_the_renames_falls_back_to_the_previous_checkpoint(tmp_path, trained, monkeypatch) -> None:
    model, optimizer = trained
    save(tmp_path, model, optimizer, step=1)
    real_replace = os.replace

    def crash_on_second_rename(src, dst):
        if Path(src).name.startswith(".checkpoint.partial-"):
            raise KeyboardInterrupt("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, model, optimizer, step=2)
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint").exists()
    assert load_checkpoint(tmp_path)[2]["step"] == 1
    save(tmp_path, model, optimizer, step=3)  # the next save tidies up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert load_checkpoint(tmp_path)[2]["step"] == 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64])
def test_a_tensor_of_another_dtype_is_refused_not_cast(tmp_path, trained, make_model, dtype) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    stored = read_tensors(directory / "model.safetensors")
    stored["embed.tokens.weight"] = stored["embed.tokens.weight"].to(dtype)
    write_tensors(directory / "model.safetensors", stored)
    with pytest.raises(CheckpointError, match=f"embed.tokens.weight: checkpoint has dtype {dtype}, the model expects "
                                              "torch.float32"):
        ckpt.load_weights(make_model(model.config), directory)


def damage_optimizer(directory: Path, change) -> None:
    """Rewrite optimizer.safetensors after `change(tensors, structure)` edits them in place."""
    file = directory / "optimizer.safetensors"
    tensors = read_tensors(file)
    with safe_open(str(file), "pt") as handle:
        structure = json.loads(handle.metadata()["structure"])
    change(tensors, structure)
    write_tensors(file, tensors, metadata={"structure": json.dumps(structure)})


@pytest.mark.parametrize(("change", "message"), [
    (lambda t, s: s["state"].update({"99": s["state"]["0"]}), r"state\.99 is 'present', expected parameter indices"),
    (lambda t, s: s["state"].update({"-1": s["state"].pop("0")}), r"state\.-1 is"),
    (lambda t, s: t.update({"state.0.step": torch.tensor(float("inf"))}), r"state\.0\.step is inf"),
    (lambda t, s: t.update({"state.0.step": torch.tensor(-50.0)}), r"state\.0\.step is -50.0"),
    (lambda t, s: s["param_groups"][0].update({"eps": "tiny"}), r"param_groups\[0\]\.eps is 'tiny'"),
    (lambda t, s: s["param_groups"][0]["params"].reverse(), r"param_groups\[\*\]\.params is \[13, 12"),
])
def test_an_impossible_optimizer_state_names_the_field(tmp_path, trained, change, message) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    damage_optimizer(directory, change)
    with pytest.raises(CorruptCheckpointError, match=message):
        load_optimizer(build_optimizer(model, TrainConfig()), directory)


def test_optimizer_moments_of_another_dtype_are_refused(tmp_path, trained) -> None:
    model, optimizer = trained
    directory = save(tmp_path, model, optimizer)
    damage_optimizer(directory, lambda t, s: t.update({"state.0.exp_avg": t["state.0.exp_avg"].half()}))
    with pytest.raises(CheckpointError, match=r"state\.0\.exp_avg has dtype torch.float16, the parameter torch.float32"):
        load_optimizer(build_optimizer(model, TrainConfig()), directory)


@pytest.mark.parametrize(("edit", "message"), [
    ('"step": 1e400', r"field 'step' is inf, expected an integer >= 0"),
    ('"step": -50', r"field 'step' is -50"),
    ('"step": "4"', r"field 'step' is '4'"),
    ('"position": -7', r"field 'position' is -7"),
    ('"position": 3', r"field 'position' is 3, expected step 2 x 2 examples per step = 4"),
    ('"history": {}', r"field 'history' is \{\}"),
    ('"pending_losses": [NaN]', r"field 'pending_losses' is \[nan\]"),
    ('"rng": {"torch": [300]}', r"field 'rng' is"),
    ('"rng": {"torch": [1, 2, 3]}', r"field 'rng' is not a generator state"),
    ('"train_config": {"steps": "many"}', r"field 'train_config' is not a valid TrainConfig"),
])
def test_an_impossible_trainer_state_names_the_field(tiny_config, make_model, char_ids, tmp_path, edit, message) -> None:
    from fmblocks.training.datasets import CausalLMWindows
    from fmblocks.training.trainer import Trainer

    def trainer() -> Trainer:
        config = TrainConfig(steps=2, batch_size=2, eval_every=0, progress=False)
        return Trainer(make_model(tiny_config), CausalLMWindows(char_ids, 16), config=config, out_dir=tmp_path)

    trainer().fit()
    file = tmp_path / "checkpoint" / "trainer_state.json"
    document = json.loads(file.read_text())
    key = edit.split('"')[1]
    document[key] = "PLACEHOLDER"
    file.write_text(json.dumps(document).replace('"PLACEHOLDER"', edit.split(": ", 1)[1]))
    resumed = trainer()
    with pytest.raises(CorruptCheckpointError, match=message):
        resumed.resume()
    assert resumed.step == 0
