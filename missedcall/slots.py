"""Plain value classes for the AGI's path: ``__slots__``, equality and a repr, no ``dataclasses``.

``@dataclass`` generates each class's methods with ``exec`` at import and pulls in
``inspect``: about 10 ms of every hang-up in a process that lives 30 ms. A class on
the hook's path subclasses :class:`Value` (or :class:`Frozen`), lists its fields in
``__slots__`` and writes its ``__init__``; comparison and repr come from here. Fields
named in ``_hidden`` never appear in a repr (passwords); those in ``_uncompared``
take no part in equality (like ``field(compare=False)``).
"""

from __future__ import annotations


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
