"""One registry per extension point: model types, cluster types, sweep axes.

A :class:`Registry` maps a name to an entry. Built-in entries register when their module is
imported; code outside the package adds its own with :meth:`Registry.register`, and from then on
pipeline files, cluster profiles and sweep files accept the new name like a built-in one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .errors import ConfigError

__all__ = ["Registry"]

E = TypeVar("E")


class Registry(Mapping[str, E], Generic[E]):
    """Named entries of one kind (``what``: "model type", "cluster type", "sweep axis").

    ``loader`` is called once, on the first look-up, to import the modules whose entries are
    built in; this keeps ``import workbench`` quick and the registry free of upward imports.
    """

    def __init__(self, what: str, *, loader: Callable[[], None] | None = None, docs: str | None = None):
        self.what = what
        self.docs = docs
        self._entries: dict[str, E] = {}
        self._loader = loader
        self._loaded = loader is None

    def register(self, name: str, entry: E, *, replace: bool = False) -> E:
        """Add ``entry`` under ``name``; a taken name is an error unless ``replace``."""
        self._load()
        if name in self._entries and not replace:
            raise ConfigError(f"{self.what} {name!r} is already registered", "pick another name or pass replace=True")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._load()
        self._entries.pop(name, None)

    def get_entry(self, name: str) -> E:
        """The entry ``name``, or a :class:`ConfigError` that lists the names and the closest one."""
        self._load()
        if name not in self._entries:
            raise ConfigError(self.unknown(name), f"see {self.docs}" if self.docs else None)
        return self._entries[name]

    def unknown(self, name: object) -> str:
        """The one-line problem for a name that is not registered."""
        self._load()
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        return (f"unknown {self.what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; {self.what}s are {', '.join(self._entries)}")

    def __getitem__(self, name: str) -> E:
        self._load()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self)})"

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()
