"""Import a library while some of the modules it imports load only when first used.

A library that imports a heavy module at its top but uses it in one rarely run function makes
every user pay for it. Inside `deferring(...)`, those modules are imported with the standard
library's `importlib.util.LazyLoader`: the module object exists at once and its code runs when
it is first used (an attribute read, or a later import of it), so the only difference a caller
can see is when the cost is paid.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # LazyLoader needs exec_module (source modules have it)
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


@contextmanager
def deferring(*names: str) -> Iterator[None]:
    """Modules NAMES imported (for the first time) inside the block run their code on first use."""
    finder = _DeferringFinder(frozenset(names))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
