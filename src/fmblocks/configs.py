"""One place that validates the typed config dataclasses (model, training, VQ-VAE, ...) and reads them.

    check_fields(config)          every field matches its annotation; floats are finite
    config_from_dict(cls, data)   unknown or missing fields -> ConfigError naming them, then cls(**data)

Annotations understood: bool, int, float (an int is a fine float; a bool is neither), str, None in a
union, dict (string keys), and tuple[X, ...] / tuple[X, Y] / list[X] of those. A bool is never an int,
NaN and infinities are never floats: a non-finite learning rate or epsilon is refused where the config
is built, not discovered as a NaN loss.
"""

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from fmblocks.errors import ConfigError

C = TypeVar("C")


def check_fields(config: Any) -> None:
    """ConfigError naming the first field of the dataclass `config` whose value its annotation refuses."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not _matches(value, hints[field.name]):
            raise ConfigError(f"{type(config).__name__}.{field.name} must be {_describe(hints[field.name])}, "
                              f"got {value!r}")


def config_from_dict(cls: type[C], data: Any) -> C:
    """`cls(**data)` after checking that `data` is an object naming only known fields and every required one."""
    name = cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {name} fields {unknown}; known: {', '.join(known)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name} lacks required fields {missing}")
    return cls(**data)


def _matches(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return kind is Any
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if kind is dict or origin is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    if kind is Any:
        return True
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(arg) for arg in args)
    if kind is type(None):
        return "None"
    if kind is float:
        return "a finite float"
    if origin is not None:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _describe(a) for a in args)}]"
    return getattr(kind, "__name__", str(kind))
