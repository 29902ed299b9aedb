"""The small HTML part next to the text: the same placeholders, every value escaped. Pure.

Only the template (the bundled one, or the admin's body.html) is markup; every
value put into it, the caller's number and name above all, is escaped, so a
caller ID cannot add a tag, an attribute or a link. ``$caller_link`` is the one
placeholder that is markup: an ``<a href="tel:…">`` built here from escaped parts.
"""

from __future__ import annotations

from missedcall.deliver.placeholders import substitute

# html.escape would import the html package (and its entity table) on the AGI's path for five replacements.
_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#x27;"}


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def render(template: str, values: dict[str, str]) -> str:
    """The HTML part: ``template`` with ``values`` (text from missedcall.deliver.mail.values) escaped."""
    if not template:
        return ""
    escaped = {name: escape(value) for name, value in values.items()}
    shown = escaped.get("caller_intl", "")
    tel = values.get("caller_tel", "")
    # A tel: URI of ours is "tel:+" and digits only; anything else gets no link.
    if tel.startswith("tel:") and tel[4:].lstrip("+").isdigit():
        escaped["caller_link"] = f'<a href="{tel}">{shown}</a>'
    else:
        escaped["caller_link"] = shown
    return substitute(template, escaped)
