"""Where a notification can go besides a mailbox: parse, validate, name and redact chat targets. Pure.

A recipient is written as a *target*: ``mailto:ops@example.com`` (or the bare
address), ``telegram:<chat_id>``, ``slack:<url>``, ``mattermost:<url>``,
``teams:<workflow-url>`` or ``webhook:<url>``.

Every target has a short, stable *key* of at most 191 characters (config.ADDRESS_MAX) with no
comma and no secret in it. The key is what the ``email`` column of
``missedcall_recipients`` holds, what storm control counts and holds by, what a
call's ``recipients`` list and ``log`` show: the address itself for mail,
``telegram:<chat_id>`` for Telegram (the bot token lives in the config file
only), and for a URL ``<scheme>:<host>/<first path segment>/~<16 hex of
SHA-256 of the URL>``: readable, redacted (the rest of a webhook URL is its
secret) and unique per URL. The URL itself is kept in the ``target`` column.

This module is imported on the AGI's path (notify checks :func:`is_chat`);
hashlib and urllib.parse are imported only when a target is parsed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    import re

URL_SCHEMES = ("slack", "mattermost", "teams", "webhook")
CHAT_SCHEMES = ("telegram", *URL_SCHEMES)
#: Longest URL accepted (the ``target`` column's size); Teams workflow URLs are about 300 characters.
URL_MAX = 2048
KEY_MAX = 191  # config.ADDRESS_MAX: the key columns' width (InnoDB's 767-byte index limit on older MariaDB)
# Patterns, compiled on first use, and ``re`` imported then: this module is imported by every AGI run,
# most never parse a target, and nothing else on a mailed call imports ``re``.
_PATTERNS = {
    # Telegram: a numeric chat id (groups are negative, supergroups -100...) or a public @channelusername.
    "telegram": r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}",
    "host": r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]",
    "unsafe": r"[^A-Za-z0-9._-]",
    "key": r"(slack|mattermost|teams|webhook):[A-Za-z0-9.?\[\]:-]{1,120}(/[A-Za-z0-9._?-]{1,120})?/~[0-9a-f]{16}",
}


def _pattern(name: str) -> re.Pattern[str]:
    import re

    return re.compile(_PATTERNS[name])  # re keeps its own cache of compiled patterns


class TargetError(ValueError):
    """A target that cannot be used; the message is one line and never holds the URL's secret part."""


class Target:
    """One parsed target. A plain class, not a dataclass: the decorator costs a millisecond at import, and
    every AGI run imports this module."""

    __slots__ = ("key", "scheme", "value")

    def __init__(self, scheme: str, value: str, key: str) -> None:
        self.scheme = scheme  # mailto | telegram | slack | mattermost | teams | webhook
        self.value = value  # the address, the chat id, or the URL
        self.key = key  # the stored, shown, counted identity (see the module's docstring)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and (self.scheme, self.value) == (other.scheme, other.value)

    def __hash__(self) -> int:
        return hash((self.scheme, self.value))

    def __repr__(self) -> str:
        return f"Target({self.scheme!r}, key={self.key!r})"  # never the URL: it may be printed

    @property
    def is_chat(self) -> bool:
        return self.scheme != "mailto"

    @property
    def stored_target(self) -> str:
        """What goes in the ``target`` column: the URL for URL schemes, "" otherwise (the key says it all)."""
        return f"{self.scheme}:{self.value}" if self.scheme in URL_SCHEMES else ""


def is_chat(text: str) -> bool:
    """Is this stored key or target a chat one (not a mail address)? Cheap: the AGI asks for every recipient."""
    scheme, colon, _rest = text.partition(":")
    return bool(colon) and scheme.lower() in CHAT_SCHEMES


def scheme_of(text: str) -> str:
    return text.partition(":")[0].lower() if is_chat(text) else "mailto"


def parse(text: str) -> Target:
    """The target ``text`` names; raises TargetError with a redacted one-line reason."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in (*CHAT_SCHEMES, "mailto"):
        from missedcall.config import ADDRESS_MAX, is_address

        if is_address(text):
            return Target("mailto", text, text)
        if "@" in text and len(text) > ADDRESS_MAX:
            raise TargetError(f"{redact(text)!r} is longer than {ADDRESS_MAX} characters")
        raise TargetError(
            f"{redact(text)!r} is neither an e-mail address nor a target"
            f" ({', '.join(s + ':' for s in ('mailto', *CHAT_SCHEMES))})"
        )
    if scheme == "mailto":
        from missedcall.config import is_address, why_not_address

        if not is_address(rest):
            raise TargetError(f"mailto:{redact(rest)!r} {why_not_address(rest)}")
        return Target("mailto", rest, rest)
    if scheme == "telegram":
        if not _pattern("telegram").fullmatch(rest):
            raise TargetError(
                f"telegram:{redact(rest)!r} is not a chat id (a number such as -1001234567890, or @channelname)"
            )
        return Target("telegram", rest, f"telegram:{rest}")
    return Target(scheme, rest, url_key(scheme, check_url(scheme, rest)))


def check_url(scheme: str, url: str) -> str:
    """The URL if it is an absolute http(s) URL we may post to; raises TargetError (redacted) otherwise."""
    from urllib.parse import urlsplit

    if len(url) > URL_MAX:
        raise TargetError(f"{scheme}: URL is longer than {URL_MAX} characters")
    if not url.isascii() or not url.isprintable() or any(c in url for c in " \"'<>\\`{}|^"):
        raise TargetError(f"{scheme}:{redact(url)} holds a space, quote or character a URL cannot")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetError(f"{scheme}:{redact(url)} is not a URL") from None
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise TargetError(f"{scheme}:{redact(url)} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise TargetError(f"{scheme}:{redact(url)} holds a user name or password; put the secret in the path")
    host = parts.netloc.rpartition("@")[2]
    if port is not None:
        host = host.rpartition(":")[0]
    if not _pattern("host").fullmatch(host):
        raise TargetError(f"{scheme}:{redact(url)} does not name a host")
    if "," in url:
        # A key must be comma-free (a call's recipients are stored comma-joined); the URL itself
        # never reaches that list, but a comma in a webhook URL is rare enough to refuse plainly.
        raise TargetError(f"{scheme}:{redact(url)} holds a comma; percent-encode it as %2C")
    return url


def url_key(scheme: str, url: str) -> str:
    import hashlib

    digest = hashlib.sha256(url.encode("ascii")).hexdigest()[:16]
    shown = redact_url(url, limit=KEY_MAX - len(scheme) - 20)
    return f"{scheme}:{shown}/~{digest}"


def redact_url(url: str, *, limit: int = 200) -> str:
    """``host/first-segment``: enough to recognise a URL, none of the secret the rest may be."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = (parts.hostname or "?").lower()
    except ValueError:
        return "?"
    first = next((s for s in parts.path.split("/") if s), "")
    host = _pattern("unsafe").sub("?", host)[:100]
    first = _pattern("unsafe").sub("?", first)[: max(0, limit - len(host) - 1)]
    return f"{host}/{first}" if first else host


def redact(text: str) -> str:
    """Any target or URL text made safe to show: URLs cut down to host and first segment, printable, short."""
    import re

    from missedcall.text import printable

    out = re.sub(r"https?://[^\s]*", lambda m: "https://" + redact_url(m.group(0)) + "/…", text, flags=re.I)
    return printable(out, limit=120, replace="?")


def show(key_or_target: str) -> str:
    """How a stored key or target is shown in list, log, doctor and errors."""
    if is_chat(key_or_target) and "://" in key_or_target:
        scheme, _, rest = key_or_target.partition(":")
        if rest.lower().startswith(("http://", "https://")):
            return f"{scheme.lower()}:{redact_url(rest)}"
    return key_or_target


def chat_id(key: str) -> str:
    """The chat id of a ``telegram:`` key."""
    return key.partition(":")[2]




def problem(key: str) -> str:
    """Why a stored recipient cannot be notified; "" when it can (mail addresses: mail.address_problem)."""
    if not is_chat(key):
        from missedcall.deliver import mail

        return mail.address_problem(key)
    if key.lower().startswith("telegram:"):
        return "" if _pattern("telegram").fullmatch(key.partition(":")[2]) else "is not a telegram:<chat id> target"
    return "" if _pattern("key").fullmatch(key) else "is not a chat target this version wrote"
