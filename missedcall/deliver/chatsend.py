"""Send one document to one chat target, and the cheap checks doctor runs on them.

Reads its own settings (MISSEDCALL_TELEGRAM_TOKEN, _TELEGRAM_API,
_WEBHOOK_SECRET, _HTTP_CAFILE) from ``Settings.raw``. The bot token is put in
the request URL only; every error passes through webpost.scrub with the token
and the URL as secrets, so neither reaches a log line, a row or the terminal.

Telegram answers ``{"ok": false, "error_code": ..., "description": ...,
"parameters": {...}}``: 429 carries ``retry_after``; a group that became a
supergroup answers 400 with ``migrate_to_chat_id``, raised as a ChatError with
``migrate_to`` so the caller can move the stored target and send again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from missedcall import config
from missedcall.deliver import targets, trust, webpost
from missedcall.deliver.webpost import ChatError

SIGNATURE_HEADER = "X-Missedcall-Signature"


@dataclass(frozen=True)
class Options:
    token: str
    api: str
    secret: str
    cafile: str

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.secret) if s]


def options(settings: config.Settings) -> Options:
    """The chat settings; raises config.ConfigError("KEY: ...") for a value that cannot work."""

    def value(key: str) -> str:
        found = settings.raw.get(key)
        return (found if found is not None else config.KEYS[key][0]).strip()

    token = value("MISSEDCALL_TELEGRAM_TOKEN")
    if token and (not token.isascii() or not token.isprintable() or any(c in token for c in " /?#%")):
        raise config.ConfigError("MISSEDCALL_TELEGRAM_TOKEN: not a bot token (as @BotFather gives it)")
    api = value("MISSEDCALL_TELEGRAM_API").rstrip("/") or config.KEYS["MISSEDCALL_TELEGRAM_API"][0]
    try:
        targets.check_url("MISSEDCALL_TELEGRAM_API", api)
    except targets.TargetError as exc:
        raise config.ConfigError(f"MISSEDCALL_TELEGRAM_API: {exc}") from None
    cafile = value("MISSEDCALL_HTTP_CAFILE")
    if cafile and not cafile.startswith("/"):
        raise config.ConfigError("MISSEDCALL_HTTP_CAFILE: must be an absolute path to a PEM file")
    return Options(token=token, api=api, secret=value("MISSEDCALL_WEBHOOK_SECRET"), cafile=cafile)


def sign(secret: str, body: bytes) -> str:
    """The X-Missedcall-Signature value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    import hashlib

    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def url_of(key: str, stored: str) -> str:
    """The URL a URL target posts to, from its stored target ("scheme:url")."""
    scheme, _, url = stored.partition(":")
    if scheme.lower() != targets.scheme_of(key) or not url:
        raise ChatError(f"{targets.show(key)}: its URL is missing from the recipients table", temporary=False)
    return url


def send(key: str, stored: str, document: dict[str, Any], opts: Options, *, timeout: float) -> str:
    """Deliver ``document`` to the target ``key`` (``stored``: its URL target, "" for Telegram); returns the id
    the service gave the message ("" when it gives none)."""
    scheme = targets.scheme_of(key)
    if scheme == "telegram":
        result = telegram_call("sendMessage", document, opts, timeout=timeout)
        ref = result.get("message_id") if isinstance(result, dict) else None
        return str(ref) if isinstance(ref, int) and not isinstance(ref, bool) else ""
    url = url_of(key, stored)
    body = webpost.encode(document)
    headers = {}
    if scheme == "webhook" and opts.secret:
        headers[SIGNATURE_HEADER] = sign(opts.secret, body)
    webpost.post_json(url, None, body=body, extra_headers=headers, timeout=timeout, cafile=opts.cafile,
                      secrets=opts.secrets)  # fmt: skip
    return ""


def telegram_call(method: str, document: dict[str, Any], opts: Options, *, timeout: float) -> Any:
    """Call a Bot API method; the ``result`` on success, else a ChatError as Telegram explains it."""
    if not opts.token:
        raise ChatError("MISSEDCALL_TELEGRAM_TOKEN is not set (see docs/chat.md)", temporary=True)
    url = f"{opts.api}/bot{opts.token}/{method}"
    answer = webpost.request(
        url,
        body=webpost.encode(document),
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "missedcall"},
        timeout=timeout,
        cafile=opts.cafile,
        secrets=opts.secrets,
    )
    data = answer.json()
    if 200 <= answer.status < 300 and isinstance(data, dict) and data.get("ok") is True:
        return data.get("result")
    error = webpost.refusal(answer, [url, *opts.secrets])
    params = data.get("parameters") if isinstance(data, dict) else None
    migrate = params.get("migrate_to_chat_id") if isinstance(params, dict) else None
    if isinstance(migrate, int) and not isinstance(migrate, bool) and abs(migrate) < 10**20:
        error.migrate_to = str(migrate)
    if 200 <= answer.status < 300:  # a 200 without "ok": a proxy or a wrong MISSEDCALL_TELEGRAM_API
        error = ChatError(f"HTTP {answer.status} without a Bot API answer (is MISSEDCALL_TELEGRAM_API right?)",
                          temporary=True, status=answer.status)  # fmt: skip
    return _unauthorized(error)


def _unauthorized(error: ChatError) -> Any:
    if error.status == 401:
        # The token is wrong for every chat: an admin fixes the config, so keep the call for retry.
        error.temporary = True
        error.args = (f"{error} (is MISSEDCALL_TELEGRAM_TOKEN right?)",)
    if error.status == 404 and not error.migrate_to:
        error.temporary = True  # the Bot API answers 404 to an unknown token too
        error.args = (f"{error} (is MISSEDCALL_TELEGRAM_TOKEN right?)",)
    raise error


def probe(key: str, stored: str, opts: Options, *, timeout: float) -> str:
    """A check that sends no message: Telegram getMe + getChat; others only their URL form and
    a TLS connection (a HEAD would be a request some webhook services count or refuse). Returns what it
    found; raises ChatError."""
    scheme = targets.scheme_of(key)
    if scheme == "telegram":
        me = telegram_call("getMe", {}, opts, timeout=timeout)
        chat = telegram_call("getChat", {"chat_id": _chat(targets.chat_id(key))}, opts, timeout=timeout)
        bot = me.get("username", "?") if isinstance(me, dict) else "?"
        kind = chat.get("type", "?") if isinstance(chat, dict) else "?"
        return f"bot @{targets.redact(str(bot))} can see this {targets.redact(str(kind))} chat"
    url = url_of(key, stored)
    reach(url, opts, timeout=timeout)
    return "URL well-formed and the server answers TLS" if url.lower().startswith("https") else "server reachable"


def reach(url: str, opts: Options, *, timeout: float) -> None:
    """Open (and close) a connection to the URL's host, TLS-verified for https: no request is sent."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if https:
                context = trust.client_context(opts.cafile)
                with context.wrap_socket(raw, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        raise ChatError(f"TLS certificate not trusted ({exc.verify_message})", temporary=True) from None
    except (OSError, ssl.SSLError) as exc:
        raise ChatError(webpost.scrub(f"{exc.__class__.__name__}: {exc}", [url]), temporary=True) from None


def _chat(chat: str) -> int | str:
    return int(chat) if chat.lstrip("-").isdigit() else chat
