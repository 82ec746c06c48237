"""Small string registries: variants are chosen by name, unknown names fail with the known list.

    >>> NORMS = Registry("norm")
    >>> @NORMS.register("rms")
    ... class RMSNorm: ...
    >>> NORMS.get("rms") is RMSNorm
    True
"""

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fmblocks.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from strings to constructors (classes or functions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a name can be registered only once."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The object registered as `name`, or UnknownNameError listing the known names."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def keyword_options(function: Callable, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """The keyword-only parameters of `function` (a class: of its constructor), less `exclude`: its options."""
    target = function.__init__ if isinstance(function, type) else function
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in exclude]


def check_options(owner: str, options: dict, known: list[str]) -> None:
    """ConfigError naming `owner` and its known options when `options` holds a name it does not take."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigError(f"{owner} has no option {names}; known options: {', '.join(known) or 'none'}")
