"""TrainConfig: JSON round trip and clear errors for bad values."""

import json

import pytest

from fmblocks.errors import ConfigError
from fmblocks.training.config import TrainConfig


def test_json_round_trip() -> None:
    config = TrainConfig(steps=7, betas=(0.8, 0.9), device="cpu", precision="bf16", compile=True, peak_flops=2e12)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("batch_size", -1), ("grad_accum", 1.5), ("lr", 0.0), ("min_lr_ratio", 2.0),
     ("betas", (0.9, 1.0)), ("warmup_steps", -1), ("device", "tpu"),
     ("precision", "fp8"), ("precision", "BF16"), ("compile", "yes"), ("peak_flops", -1.0)],
)
def test_bad_values_raise_config_error(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_unknown_field_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown TrainConfig field.*'stpes'.*known"):
        TrainConfig.from_dict({"stpes": 3})
