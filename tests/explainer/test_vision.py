"""A ViT in the explainer: patches as tokens, class probabilities, Q/K/V over patches, the server's image route."""

import pytest
import torch

from fmblocks.errors import ConfigError
from fmblocks.explainer.server import Explainer
from fmblocks.explainer.vision import analyze_image, inspect_image
from fmblocks.generation import filter_logits


def direct(model, digits, index):
    with torch.no_grad():
        return model(digits.images[index].float().div(255)[None, None], return_intermediates=True)


def test_patches_are_the_tokens_and_the_class_is_the_prediction(vit) -> None:
    model, digits = vit
    data = analyze_image(model, digits, 3, temperature=0.5, top_k=3)
    assert data["tokens"][:3] == ["CLS", "0,0", "0,1"] and len(data["tokens"]) == 17
    assert data["image"]["label"] == int(digits.labels[3]) and data["image"]["grid"] == 4
    assert torch.equal(torch.tensor(data["image"]["pixels"]), digits.images[3].float().div(255))
    out = direct(model, digits, 3)
    sampled = filter_logits(out.logits[0], temperature=0.5, top_k=3).softmax(-1)
    assert sorted(int(n["token"]) for n in data["next"]) == list(range(10))
    for item in data["next"]:
        assert item["p"] == pytest.approx(float(out.logits[0].softmax(-1)[item["id"]]), abs=1e-6)
        assert item["p_sampled"] == pytest.approx(float(sampled[item["id"]]), abs=1e-6)
    assert data["lens"][-1][0][0]["id"] == int(out.logits[0].argmax())  # the class token's lens is the model's
    attention = torch.tensor(data["attention"])
    assert torch.allclose(attention, torch.stack([a[0] for a in out.intermediates["attention"]]), atol=1e-6)


def test_qkv_over_patches_matches_the_model(vit) -> None:
    model, digits = vit
    detail = inspect_image(model, digits, 5, layer=1, head=2, token=6)
    row = direct(model, digits, 5).intermediates["attention"][1][0, 2, 6]
    assert torch.allclose(torch.tensor(detail["qkv"]["weights"]), row, atol=1e-6)
    assert all(detail["qkv"]["mask"])
    e = detail["embedding"]
    assert torch.allclose(torch.tensor(e["token"]) + torch.tensor(e["position"]), torch.tensor(e["input"]), atol=1e-6)


def test_the_server_routes_images_and_refuses_bad_ones(vit) -> None:
    model, digits = vit
    explainer = Explainer(model, None, digits=digits)
    assert explainer.info()["n_images"] == 20 and "model" not in explainer.info()["tokenizers"]
    assert explainer.analyze({"image": 2})["image"]["index"] == 2
    assert explainer.inspect({"image": 2, "layer": 1, "head": 0, "token": 3})["token"] == 3
    for bad in (20, -1, "3", 1.5):
        with pytest.raises(ConfigError, match="image must be an integer in 0..19"):
            explainer.analyze({"image": bad})
    with pytest.raises(ConfigError):
        explainer.generate({"text": "x"})
    with pytest.raises(ConfigError, match="no tokenizer"):
        explainer.tokenize({"text": "x", "tokenizer": "model"})


def test_the_cli_loads_a_vit_run_without_a_tokenizer(vit, tmp_path) -> None:
    from fmblocks.commands.explain import load_for_explainer
    from fmblocks.training.checkpoint import save_checkpoint

    model, _ = vit
    save_checkpoint(tmp_path / "checkpoint", model=model, state={"step": 0}, model_config=model.config)
    loaded, tokenizer = load_for_explainer(tmp_path)
    assert tokenizer is None and loaded.config.arch == "vit"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
