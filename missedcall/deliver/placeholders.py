"""``$name`` placeholders in the mail and chat templates: ``string.Template.safe_substitute``, without ``re``. Pure.

The templates' syntax is string.Template's and stays so (README, "Templates"):
``$name`` and ``${name}`` are replaced when ``name`` is known and left as written
when not, ``$$`` is a ``$``, and any other ``$`` stays. string.Template compiles
its pattern with ``re`` when the class is made, and ``re`` brings ``enum`` and
``functools`` with it: on the AGI's path, where nothing else needs them any more,
that was a few milliseconds of every mailed call for a scan this module does with
``str.find``. tests/test_placeholders.py holds the two to the same output on
generated templates, hostile ones included.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Mapping

#: string.Template's ``idpattern``, ``(?a:[_a-z][_a-z0-9]*)`` with IGNORECASE: ASCII only, so the
#: Kelvin sign or a long s never passes for a letter.
_FIRST = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REST = _FIRST | frozenset("0123456789")


def _name_end(template: str, start: int) -> int:
    """Where an identifier starting at ``start`` ends (``start`` itself when none starts there)."""
    if start >= len(template) or template[start] not in _FIRST:
        return start
    end = start + 1
    while end < len(template) and template[end] in _REST:
        end += 1
    return end


#: A template cut into (text, name, as written) pieces, by template: the FastAGI service fills the same
#: few templates for every call, and the scan (a Python loop over the template's characters) cost it
#: more than the rest of the message. Bounded: a template read again after a change is a new key.
_PIECES: dict[str, tuple[tuple[str, str, str], ...]] = {}
_KEPT = 64


def _pieces(template: str) -> tuple[tuple[str, str, str], ...]:
    """``template`` as (literal text, placeholder name or "", the placeholder as written) pieces."""
    pieces: list[tuple[str, str, str]] = []
    text: list[str] = []
    done = 0
    dollar = template.find("$")
    while dollar >= 0:
        text.append(template[done:dollar])
        after = dollar + 1
        if template.startswith("$", after):  # "$$"
            text.append("$")
            done = after + 1
        elif (end := _name_end(template, after)) > after:  # "$name"
            pieces.append(("".join(text), template[after:end], template[dollar:end]))
            text = []
            done = end
        elif (
            template.startswith("{", after)
            and (end := _name_end(template, after + 1)) > after + 1
            and template.startswith("}", end)
        ):  # "${name}"
            pieces.append(("".join(text), template[after + 1 : end], template[dollar : end + 1]))
            text = []
            done = end + 1
        else:  # a "$" that starts no placeholder stays, and the scan goes on right after it
            text.append("$")
            done = after
        dollar = template.find("$", done)
    text.append(template[done:])
    pieces.append(("".join(text), "", ""))
    return tuple(pieces)


def substitute(template: str, values: Mapping[str, object]) -> str:
    """``template`` with its known placeholders filled in, exactly as ``Template(template).safe_substitute(values)``."""
    pieces = _PIECES.get(template)
    if pieces is None:
        if "$" not in template:
            return template
        pieces = _pieces(template)
        if len(_PIECES) >= _KEPT:
            _PIECES.clear()
        _PIECES[template] = pieces
    out: list[str] = []
    for text, name, written in pieces:
        out.append(text)
        if name:
            out.append(str(values[name]) if name in values else written)
    return "".join(out)
