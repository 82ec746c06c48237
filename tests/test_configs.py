"""The shared config checks: annotations enforced (a bool is no int, NaN is no float), dicts read strictly."""

import math
from dataclasses import dataclass, field

import pytest

from fmblocks.configs import check_fields, config_from_dict
from fmblocks.errors import ConfigError
from fmblocks.quantizers.vqvae import VQVAEConfig
from fmblocks.training.config import TrainConfig


@dataclass
class Sample:
    size: int
    rate: float = 0.5
    name: str | None = None
    pair: tuple[float, float] = (0.0, 1.0)
    names: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self)


def test_values_matching_their_annotations_pass() -> None:
    Sample(3, 2, None, (1, 2.5), ("a", "b"), {"k": [1]})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": True}, r"Sample.size must be int, got True"),
    ({"size": 2.0}, r"Sample.size must be int, got 2.0"),
    ({"size": 1, "rate": math.nan}, r"Sample.rate must be a finite float, got nan"),
    ({"size": 1, "rate": -math.inf}, r"Sample.rate must be a finite float, got -inf"),
    ({"size": 1, "rate": "0.1"}, r"Sample.rate must be a finite float, got '0.1'"),
    ({"size": 1, "name": 3}, r"Sample.name must be str \| None, got 3"),
    ({"size": 1, "pair": (1.0,)}, r"Sample.pair must be tuple\[a finite float, a finite float\]"),
    ({"size": 1, "pair": (1.0, math.nan)}, r"Sample.pair must be tuple"),
    ({"size": 1, "names": ("a", 1)}, r"Sample.names must be tuple\[str, \.\.\.\]"),
    ({"size": 1, "options": {1: 2}}, r"Sample.options must be dict"),
])
def test_values_against_their_annotations_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sample(**kwargs)


def test_reading_from_a_dict_names_unknown_and_missing_fields() -> None:
    assert config_from_dict(Sample, {"size": 2}) == Sample(2)
    with pytest.raises(ConfigError, match=r"unknown Sample fields \['colour'\]; known: size, rate"):
        config_from_dict(Sample, {"size": 2, "colour": "red"})
    with pytest.raises(ConfigError, match=r"Sample lacks required fields \['size'\]"):
        config_from_dict(Sample, {})
    with pytest.raises(ConfigError, match="Sample must be a JSON object, got list"):
        config_from_dict(Sample, [1])


@pytest.mark.parametrize(("make", "message"), [
    (lambda: TrainConfig(lr=math.inf), "TrainConfig.lr must be a finite float"),
    (lambda: TrainConfig(betas=(0.9, math.nan)), "TrainConfig.betas"),
    (lambda: TrainConfig(steps=True), "TrainConfig.steps must be int"),
    (lambda: VQVAEConfig(beta=math.nan), "VQVAEConfig.beta must be a finite float"),
    (lambda: VQVAEConfig(decay=math.inf), "VQVAEConfig.decay must be a finite float"),
])
def test_every_config_uses_the_shared_checks(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()
