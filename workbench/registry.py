"""One registry shape for everything pluggable: recipes, backends, zoo entries, tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError, WorkbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """`register(name, item)` and `get(name)`; an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        if not replace and name in self._items and self._items[name] is not item:
            raise WorkbenchError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
