"""State classes whose stored records survive a change of their fields.

The live worker stores its state as pickles of these dataclasses (`processor.stream.partition_state`:
a partner's history entries, a partition's meta), and recovers them from the changelog long after
they were written, possibly by an older release. A plain dataclass pickles its `__dict__` and is
read back without `__init__`, so a field added later reads back missing when its default is a
`default_factory` (an `AttributeError` on first use, mid-batch), and a field removed later comes
back as a stray attribute. An `Evolvable` dataclass reads any earlier or later form of itself by
field *name*: a field the record does not have takes its default, one the class no longer has is
dropped. (Renaming a field is a removal and an addition: give it a default that reads right.)

Fields are still pickled as the `__dict__` (no per-write cost), and a record with exactly the
class's fields (every record written by this release) is read with one dict update.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_MISSING = dataclasses.MISSING


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _defaults(cls: type) -> tuple[frozenset[str], dict[str, Callable[[], Any]]]:
    """The class's field names, and a maker of each field's default (a required field has none)."""
    cached = cls.__dict__.get("_evolvable_fields")
    if cached is None:
        makers: dict[str, Callable[[], Any]] = {}
        for f in dataclasses.fields(cls):
            if f.default is not _MISSING:
                makers[f.name] = _constant(f.default)
            elif f.default_factory is not _MISSING:
                makers[f.name] = f.default_factory
        cached = (frozenset(f.name for f in dataclasses.fields(cls)), makers)
        type.__setattr__(cls, "_evolvable_fields", cached)
    return cached  # type: ignore[no-any-return]


class Evolvable:
    """A mix-in for a stored dataclass: `__setstate__` reads a record of any of its forms by name."""

    __slots__ = ()

    def __setstate__(self, state: dict[str, Any]) -> None:
        names, makers = _defaults(type(self))
        d = self.__dict__
        if state.keys() != names:
            missing = names - state.keys()
            required = sorted(n for n in missing if n not in makers)
            if required:
                raise ValueError(f"stored {type(self).__name__} lacks {', '.join(required)}, which has no "
                                 "default: it cannot be read by this release")
            for name in missing:
                d[name] = makers[name]()
            state = {k: v for k, v in state.items() if k in names}
        d.update(state)
