"""Is this the same caller? Phone numbers as PBXs write them, brought to one comparable key. Pure.

A miss comes in as ``+79161234567`` or ``79161234567``; the agent calls back
``89161234567`` or ``9 8916…`` (an outside-line prefix); the CDR may keep any of
these. Both sides are normalised to E.164 with the ``phonenumbers`` library in
the box's default region (``MISSEDCALL_REGION``), trying the number as dialled,
then without an outside-line prefix, then as international. Where no reading
is a valid number, the last 10 digits stand in. Short numbers are extensions:
they never match a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

#: Up to this many digits a number is an internal extension (FreePBX's are 2–6 digits).
EXTENSION_DIGITS = 6
#: Digits a fallback key keeps: enough to tell callers apart, few enough to ignore any prefix.
FALLBACK_DIGITS = 10
#: Outside-line prefixes tried when the number as dialled is not valid.
TRUNK_PREFIXES = ("9", "0")


@dataclass(frozen=True)
class NumberKey:
    """``e164`` when the number parsed as a valid number, else ""; ``tail`` is always its last digits."""

    e164: str
    tail: str

    def matches(self, other: NumberKey) -> bool:
        if self.e164 and other.e164:
            return self.e164 == other.e164
        return bool(self.tail) and self.tail == other.tail


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def is_extension(text: str, extension_digits: int = EXTENSION_DIGITS) -> bool:
    """A short all-digit number (``102``, ``*97`` aside): an extension on this PBX, not a caller."""
    digits = digits_of(text)
    return 0 < len(digits) <= extension_digits


@lru_cache(maxsize=65536)
def key(text: str, region: str = "RU") -> NumberKey | None:
    """The comparable key of a number, or None for an extension, an anonymous or an empty one."""
    text = text.strip()[:64]
    digits = digits_of(text)
    if len(digits) <= EXTENSION_DIGITS:
        return None
    e164 = _e164(digits, text.lstrip().startswith("+"), region.upper())
    tail = (digits_of(e164) if e164 else digits)[-FALLBACK_DIGITS:]
    return NumberKey(e164, tail)


def _e164(digits: str, plus: bool, region: str) -> str:
    import phonenumbers  # only the resolver pays for it; the AGI never imports this module

    readings: list[tuple[str, str | None]] = []
    if plus:
        readings.append(("+" + digits, None))
    readings.append((digits, region))
    for prefix in TRUNK_PREFIXES:
        if digits.startswith(prefix) and len(digits) - len(prefix) > EXTENSION_DIGITS:
            readings.append((digits[len(prefix) :], region))
    if not plus:
        readings.append(("+" + digits, None))
    for candidate, in_region in readings:
        try:
            parsed = phonenumbers.parse(candidate, in_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return ""


def same_caller(a: str, b: str, region: str = "RU") -> bool:
    """True when two numbers as written by the PBX reach the same outside caller."""
    first, second = key(a, region), key(b, region)
    return first is not None and second is not None and first.matches(second)


def international(text: str, region: str = "RU") -> str:
    """The number for people to read and tap: ``+7 916 123-45-67`` when it parses, else as given."""
    found = key(text, region)
    if found is None or not found.e164:
        return text.strip()
    import phonenumbers

    return phonenumbers.format_number(phonenumbers.parse(found.e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
