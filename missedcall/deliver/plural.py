"""Numbers with the right word form: "1 звонок, 2 звонка, 5 звонков", "1 call, 2 calls". Pure.

Russian has three forms chosen by the last two digits (CLDR's one/few/many for
integers); English has two. Every count a person reads in a mail or report goes
through :func:`count`, so no template can say "2 пропущенных звонков" again.
"""

from __future__ import annotations

#: language -> noun -> the forms :func:`form` picks from (en: one, other; ru: one, few, many).
NOUNS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "call": ("call", "calls"),
        "missed call": ("missed call", "missed calls"),
        "minute": ("minute", "minutes"),
        "minute-acc": ("minute", "minutes"),
        "second": ("second", "seconds"),
        "notification": ("notification", "notifications"),
    },
    "ru": {
        "call": ("звонок", "звонка", "звонков"),
        "missed call": ("пропущенный звонок", "пропущенных звонка", "пропущенных звонков"),
        "minute": ("минута", "минуты", "минут"),
        "minute-acc": ("минуту", "минуты", "минут"),  # after "за": за 1 минуту, за 2 минуты, за 5 минут
        "second": ("секунда", "секунды", "секунд"),
        "notification": ("уведомление", "уведомления", "уведомлений"),
    },
}


def form(n: int, forms: tuple[str, ...]) -> str:
    """The form of a noun for ``n``: two forms (one, other) or three (Russian one, few, many)."""
    n = abs(n)
    if len(forms) == 2:
        return forms[0] if n == 1 else forms[1]
    last, last_two = n % 10, n % 100
    if last == 1 and last_two != 11:
        return forms[0]
    if 2 <= last <= 4 and not 12 <= last_two <= 14:
        return forms[1]
    return forms[2]


def count(n: int, noun: str, language: str) -> str:
    """``n`` and the noun in its right form, e.g. ``count(2, "missed call", "ru")`` -> "2 пропущенных звонка"."""
    nouns = NOUNS.get(language) or NOUNS["en"]
    return f"{n} {form(n, nouns[noun])}"
