"""Plain value classes for the AGI's path: ``__slots__``, equality and a repr, no ``dataclasses``.

``@dataclass`` generates each class's methods with ``exec`` at import and pulls in
``inspect``: about 10 ms of every hang-up in a process that lives 30 ms. A class on
the hook's path subclasses :class:`Value` (or :class:`Frozen`), lists its fields in
``__slots__`` and writes its ``__init__``; comparison and repr come from here. Fields
named in ``_hidden`` never appear in a repr (passwords); those in ``_uncompared``
take no part in equality (like ``field(compare=False)``). :func:`replace` stands in for
``dataclasses.replace``; copy, deepcopy and pickle work on both kinds.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from typing import TypeVar

    V = TypeVar("V", bound="Value")


class Value:
    """Equality over the slots (bar ``_uncompared``), a repr without ``_hidden`` ones; unhashable, like a
    mutable dataclass."""

    __slots__ = ()
    _hidden: tuple[str, ...] = ()
    _uncompared: tuple[str, ...] = ()

    def _compared(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__ if name not in self._uncompared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name not in self._hidden)
        return f"{self.__class__.__name__}({shown})"

    def __reduce__(self) -> tuple[object, ...]:
        # copy, deepcopy and pickle: rebuilt field by field (a Frozen refuses setattr).
        return (_rebuild, (self.__class__, {name: getattr(self, name) for name in self.__slots__}))

    def __replace__(self, **changes: object) -> Value:
        """A copy with some fields changed, through ``__init__`` (``copy.replace`` on Python 3.13+)."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{self.__class__.__name__} has no field {sorted(unknown)[0]!r}")
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return self.__class__(**values)


def replace(value: V, **changes: object) -> V:
    """``dataclasses.replace`` for these classes: a copy of ``value`` with ``changes``, through its ``__init__``."""
    return value.__replace__(**changes)  # type: ignore[return-value]


def _rebuild(cls: type[V], fields: dict[str, object]) -> V:
    value = cls.__new__(cls)
    for name, field in fields.items():
        object.__setattr__(value, name, field)
    return value


class Frozen(Value):
    """A :class:`Value` that cannot be changed after ``__init__`` (which sets fields with ``_set``); hashable."""

    __slots__ = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {self.__class__.__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {self.__class__.__name__}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._compared())
