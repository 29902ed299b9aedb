"""Write our mails without the ``email`` package: a small message object and its bytes. Pure.

Importing ``email`` (message, policy, header registry, generator, utils with socket, calendar,
urllib and random) cost every missed call more than the rest of the notifier, and the messages
we write are always of one narrow shape: a few headers whose addresses are bare ASCII
addr-specs (checked before they get here), unstructured text (subject, thread topic) that may
be Cyrillic, a UTF-8 text part and perhaps an HTML alternative. That shape is written here:

* unstructured values that are not plain ASCII become RFC 2047 ``B`` encoded words, each at most
  75 characters and never split inside a character; every space stays *inside* an encoded word,
  because readers drop the white space between two of them ("Иван Петров" must not read
  "ИванПетров");
* a value that holds ``=?`` is encoded too, so no reader can take caller text for an encoded word
  of its own;
* CR, LF and NUL are refused in any value (ValueError), as ``email``'s policy does: caller text can
  change words, never add a header;
* bodies are quoted-printable UTF-8 (7bit when ASCII), so no relay mangles Cyrillic.

The test suite reads every shape back with the ``email`` package's own parser (tests/test_mime.py);
:meth:`Draft.to_email` does the same for the admin commands that show a message.
"""

from __future__ import annotations

import binascii
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
    from email.message import EmailMessage

#: Headers whose value is a list of addresses or message ids: folded between items, never encoded.
_STRUCTURED = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender", "message-id", "in-reply-to", "references"})
_WIDTH = 76  # a folded line's length (RFC 5322 asks for at most 78)
_WORD = 75  # RFC 2047: an encoded word is at most 75 characters
_PREFIX = "=?utf-8?b?"
#: What a header name may hold (RFC 5322 ftext): printable ASCII but the colon.
_NAME_CHARS = frozenset(chr(c) for c in range(33, 127)) - {":"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Draft:
    """A message of ours: headers in the order set, a text body and an optional HTML alternative.

    It answers the part of ``email.message.Message`` the notifier uses: ``msg[name] = value``
    (appends), ``msg[name]`` (the first value as set, or None), ``del msg[name]`` (every one),
    ``get``, ``get_all``, ``items``, ``keys``, ``as_bytes`` and ``as_string``.
    """

    __slots__ = ("_headers", "boundary", "html", "text")

    def __init__(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self.text = ""
        self.html = ""  # "" for a text-only message
        self.boundary = ""  # chosen when the HTML part is added

    def __setitem__(self, name: str, value: str) -> None:
        value = str(value)
        if not name or not _NAME_CHARS.issuperset(name):  # one set operation, not a generator per character
            raise ValueError(f"not a header name: {name!r}")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name} may not contain CR, LF or NUL")
        if name.lower() in _STRUCTURED and not value.isascii():
            # Addresses and message ids are checked to be ASCII before they get here (config.is_plain_address);
            # one that is not is refused where it is set, not later, half-way through writing the message.
            raise ValueError(f"header {name} takes ASCII addresses or message ids only")
        self._headers.append((name, value))

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        self._headers = [(n, v) for n, v in self._headers if n.lower() != lower]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        return next((v for n, v in self._headers if n.lower() == lower), default)

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for n, v in self._headers if n.lower() == lower]

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def keys(self) -> list[str]:
        return [name for name, _ in self._headers]

    def set_content(self, text: str) -> None:
        self.text = text

    def add_alternative(self, html: str) -> None:
        self.html = html
        if not self.boundary:
            self.boundary = "===============" + str(int.from_bytes(os.urandom(8), "big")).zfill(19) + "=="

    def as_bytes(self, linesep: str = "\n") -> bytes:
        """The whole message, every line ended by ``linesep`` ("\\n" for sendmail, "\\r\\n" for SMTP)."""
        lines = [folded for name, value in self._headers for folded in header_lines(name, value)]
        lines.append("MIME-Version: 1.0")
        if not self.html:
            *head, body = _part("plain", self.text)
            lines += head
        else:
            boundary = self.boundary
            lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            lines.append("")
            for subtype, content in (("plain", self.text), ("html", self.html)):
                lines.append(f"--{boundary}")
                lines += _part(subtype, content)  # the body's last line end is the boundary's (RFC 2046)
            lines.append(f"--{boundary}--")
            body = ""
        data = "\n".join(lines) + "\n" + body
        if not data.endswith("\n"):
            data += "\n"
        return (data if linesep == "\n" else data.replace("\n", linesep)).encode("ascii")

    def as_string(self) -> str:
        return self.as_bytes().decode("ascii")

    def to_email(self) -> EmailMessage:
        """The same message as the ``email`` package reads it (for showing it; never on a call's path)."""
        from email import message_from_bytes
        from email.policy import default

        parsed: EmailMessage = message_from_bytes(self.as_bytes(), policy=default)  # type: ignore[assignment]
        return parsed


def _part(subtype: str, content: str) -> list[str]:
    """A text part's two headers, a blank line and its body: the header says the encoding the body has."""
    content = content.replace("\r\n", "\n").replace("\r", "\n")
    if content and not content.endswith("\n"):
        content += "\n"
    plain = content.isascii() and all(len(line) <= 998 for line in content.split("\n"))
    body = content if plain else binascii.b2a_qp(content.encode("utf-8"), istext=True).decode("ascii")
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {'7bit' if plain else 'quoted-printable'}",
        "",
        body,
    ]


def header_lines(name: str, value: str) -> list[str]:
    """``name: value`` as folded lines (without line ends)."""
    if name.lower() in _STRUCTURED:
        return _fold(f"{name}: ", _split_items(value))
    if value.isascii() and "=?" not in value:
        return _fold(f"{name}: ", value.split(" "))
    return _fold(f"{name}: ", list(encoded_words(value, first=_WIDTH - len(name) - 2)))


def _split_items(value: str) -> list[str]:
    """Addresses (a comma list) or message ids (a space list), each kept whole."""
    if "," in value:
        parts = [part.strip() for part in value.split(",")]
        return [part + "," for part in parts[:-1]] + parts[-1:]
    return value.split(" ")


def _fold(head: str, items: list[str]) -> list[str]:
    """``items`` joined by single spaces into lines of about ``_WIDTH``; a fold takes the place of
    a space (unfolding gives the value back), and a continuation line starts with that space."""
    lines: list[str] = []
    line = head + items[0]
    for item in items[1:]:
        if item and len(line) + 1 + len(item) > _WIDTH:
            lines.append(line)
            line = " " + item
        else:
            line += " " + item
    lines.append(line)
    return lines


def encoded_words(value: str, *, first: int = _WORD) -> Iterator[str]:
    """``value`` as RFC 2047 ``B`` encoded words of UTF-8; the first fits in ``first`` characters."""
    room = min(_WORD, max(first, len(_PREFIX) + 2 + 8))
    chunk = ""
    size = 0  # UTF-8 bytes in chunk, kept as it grows: encoding the whole chunk again for each character was quadratic
    for ch in value:
        width = len(ch.encode("utf-8"))
        if _word_length(size + width) > room and chunk:
            yield _word(chunk)
            chunk, size, room = "", 0, _WORD
        chunk += ch
        size += width
    yield _word(chunk)


def _word_length(size: int) -> int:
    """The length of the encoded word of ``size`` UTF-8 bytes."""
    return len(_PREFIX) + 2 + 4 * ((size + 2) // 3)


def _word(text: str) -> str:
    return _PREFIX + binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii") + "?="


def format_date(moment: datetime) -> str:
    """RFC 5322 date in the moment's own offset (``Thu, 03 Dec 2026 15:40:05 +0300``); English names always."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {sign}{hours:02d}{mins:02d}"
    )


def make_msgid(kind: str, domain: str) -> str:
    """A fresh Message-ID (time, pid and 64 random bits: unique without asking the host name)."""
    stamp = int(time.time() * 100)
    return f"<{stamp}.{os.getpid()}.{int.from_bytes(os.urandom(8), 'big')}.{kind}@{domain}>"
