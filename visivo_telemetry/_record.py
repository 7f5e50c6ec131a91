"""`Record`: a named, immutable tuple for the hot path, without importing `typing`.

`typing.NamedTuple` (and `collections.namedtuple`) cost a cold CLI process several
milliseconds of imports; this is the few lines of them that we use.
"""

from __future__ import annotations


class Record(tuple):
    """A tuple whose positions have names: declare `_fields` and optional trailing `_defaults`."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: tuple[object, ...] = ()

    def __init_subclass__(cls) -> None:
        for index, name in enumerate(cls._fields):
            setattr(cls, name, property(lambda self, i=index: self[i], doc=name))

    def __new__(cls, *values: object) -> Record:
        missing = len(cls._fields) - len(values)
        if 0 < missing <= len(cls._defaults):
            values = values + cls._defaults[len(cls._defaults) - missing :]
        if len(values) != len(cls._fields):
            raise TypeError(f"{cls.__name__} takes {len(cls._fields)} values")
        return tuple.__new__(cls, values)

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True))
        return f"{type(self).__name__}({pairs})"
