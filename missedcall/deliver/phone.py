"""A caller's number as people read and tap it: ``+7 916 123-45-67`` and ``tel:+79161234567``. Pure.

phonenumbers would take 11 ms to import on the AGI's path for every call, so
this formats the common cases itself and otherwise leaves the number as the
PBX wrote it: Russia/Kazakhstan (+7, grouped 3-3-2-2), North America (+1,
3-3-4), any number that says it is international (a leading ``+`` or ``00``,
shown as ``+`` and its digits), and national numbers of the box's
MISSEDCALL_REGION when that is RU, KZ, US or CA. An 11-digit number starting
with 7 is +7 (no other plan writes national numbers that way). Extensions and
anything with letters stay as they are, without a link.
"""

from __future__ import annotations

EXTENSION_DIGITS = 6
_ONE = ("US", "CA")


def _group(e164_digits: str) -> str:
    if e164_digits.startswith("7") and len(e164_digits) == 11:
        d = e164_digits[1:]
        return f"+7 {d[:3]} {d[3:6]}-{d[6:8]}-{d[8:]}"
    if e164_digits.startswith("1") and len(e164_digits) == 11:
        d = e164_digits[1:]
        return f"+1 {d[:3]} {d[3:6]} {d[6:]}"
    return "+" + e164_digits


def international(number: str, region: str = "") -> str:
    """The E.164 digits (no ``+``) when ``number`` is unambiguous, else ""."""
    text = number.strip().replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 15:
        return ""
    if plus:
        return digits if len(digits) >= 8 else ""
    if digits.startswith("00") and len(digits) >= 10:
        return digits[2:]
    region = region.strip().upper()
    if len(digits) == 11 and digits[0] == "7":
        return digits
    if region in ("RU", "KZ") and len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    if region in ("RU", "KZ") and len(digits) == 10 and digits[0] in "3489":
        return "7" + digits
    if region in _ONE and len(digits) == 10 and digits[0] in "23456789":
        return "1" + digits
    if region in _ONE and len(digits) == 11 and digits[0] == "1":
        return digits
    return ""


def read(number: str, region: str = "") -> tuple[str, str]:
    """(shown, tel): how to show ``number`` (already cleaned of control characters), ``+7 916 123-45-67`` or the
    number as given, and the link to call it back, ``tel:+79161234567`` or "" when none makes sense.
    A plain tuple: a NamedTuple class would cost the hook half a millisecond to import."""
    e164 = international(number, region)
    if e164:
        return _group(e164), "tel:+" + e164
    digits = number.strip()
    if digits.isascii() and digits.isdigit() and len(digits) > EXTENSION_DIGITS:
        return digits, "tel:" + digits  # a national number: the phone's own dialler knows the region
    return number.strip(), ""
