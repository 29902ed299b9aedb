"""POST a JSON document over HTTP(S) with the standard library, bounded, and say what the answer means.

Imported only when a call has a chat target (missedcall.deliver.chatsend), so the
AGI of a mail-only setup never loads urllib, http.client or ssl through it.

- HTTPS checks the certificate against the system CAs, or MISSEDCALL_HTTP_CAFILE;
  plain http:// is accepted for LAN services.
- Proxies come from the standard environment variables (urllib's ProxyHandler).
- Redirects are not followed: a webhook that moved must be changed by its owner,
  and a redirect must not carry the body (or a token in the path) elsewhere.
- The whole exchange, name lookup included, is bounded by ``timeout`` (a worker
  thread joined for it); the answer is read up to 64 KB.
- Errors are one line and never hold the URL: the caller passes the secrets
  (the URL, the bot token) that are replaced by ``***`` in every message.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from missedcall.deliver import trust
from missedcall.text import printable

ANSWER_MAX = 64 * 1024
#: The longest Retry-After honoured; a larger one is a misbehaving server, and back-off takes over.
RETRY_AFTER_MAX = 3600


class ChatError(RuntimeError):
    """A target did not take the message. ``temporary``: worth trying again (5xx, 429, timeouts, TLS trouble
    an admin fixes); else the target refused it for good (4xx) and is ``failed`` at once."""

    def __init__(self, message: str, *, temporary: bool, status: int = 0, retry_after: int = 0,
                 migrate_to: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.temporary = temporary
        self.status = status
        self.retry_after = retry_after
        self.migrate_to = migrate_to


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then reaches us as an HTTPError


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return printable(text, limit=300, replace="?")


def request(url: str, *, body: bytes | None, headers: Mapping[str, str], timeout: float, cafile: str,
            secrets: Iterable[str], method: str = "POST") -> Answer:  # fmt: skip
    """Send one request; any HTTP status is an Answer, transport trouble a temporary ChatError.

    The whole exchange (name lookup, connect, TLS, request, answer) runs in a worker thread joined for
    ``timeout``: socket timeouts bound each step, not their sum, and do not cover getaddrinfo at all. A
    request still running then is abandoned (the thread is a daemon; the AGI exits moments later).
    """
    if not url.lower().startswith(("https://", "http://")):  # never file: or ftp: from a stored target
        raise ChatError("not an http:// or https:// URL", temporary=False)
    secrets = [url, *secrets]
    try:
        context = trust.client_context(cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ChatError(f"cannot load the CA file {printable(cafile, limit=80)}: {exc}", temporary=True) from None
    deadline = time.monotonic() + timeout
    outcome: list[Answer | ChatError] = []

    def work() -> None:
        try:
            outcome.append(_exchange(url, body, headers, method, context, deadline, secrets))
        except ChatError as exc:
            outcome.append(exc)
        except Exception as exc:  # whatever urllib raises becomes one line, never the URL
            outcome.append(ChatError(scrub(f"{exc.__class__.__name__}: {exc}", secrets), temporary=True))

    worker = threading.Thread(target=work, daemon=True, name="missedcall-http")
    worker.start()
    worker.join(max(0.05, timeout) + 0.05)
    if not outcome:
        raise ChatError(f"no answer within {timeout:.1f} s", temporary=True)
    if isinstance(outcome[0], ChatError):
        raise outcome[0]
    return outcome[0]


def _exchange(url: str, body: bytes | None, headers: Mapping[str, str], method: str, context: ssl.SSLContext,
              deadline: float, secrets: list[str]) -> Answer:  # fmt: skip
    timeout = max(0.05, deadline - time.monotonic())
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))  # noqa: S310 (checked)
    try:
        with opener.open(req, timeout=timeout) as response:
            return Answer(response.status, _read(response, deadline), dict(response.headers.items()))
    except urllib.error.HTTPError as exc:
        try:
            data = _read(exc, deadline)
        except ChatError:
            data = b""
        return Answer(exc.code, data, dict(exc.headers.items()) if exc.headers else {})
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            said = f"TLS certificate not trusted ({reason.verify_message or reason.reason})"
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            said = f"no answer within {timeout:.1f} s"
        elif isinstance(reason, socket.gaierror):
            host = urllib.parse.urlsplit(url).hostname or "?"
            said = f"cannot resolve {printable(host, limit=80)} ({reason.strerror or reason})"
        else:
            said = f"{reason.__class__.__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
        raise ChatError(scrub(said, secrets), temporary=True) from None
    except (TimeoutError, socket.timeout):
        raise ChatError(f"no answer within {timeout:.1f} s", temporary=True) from None
    except (OSError, ssl.SSLError, ValueError, http.client.HTTPException) as exc:
        raise ChatError(scrub(f"{exc.__class__.__name__}: {exc}", secrets), temporary=True) from None


def _read(response: Any, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < ANSWER_MAX:
        if time.monotonic() > deadline:
            raise ChatError("the answer did not arrive in time", temporary=True)
        chunk = response.read(min(8192, ANSWER_MAX - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def post_json(url: str, document: Any, *, timeout: float, cafile: str, secrets: Iterable[str] = (),
              extra_headers: Mapping[str, str] | None = None, body: bytes | None = None) -> Answer:  # fmt: skip
    """POST ``document`` as JSON (or the given ``body``); a 2xx answer is returned, anything else raised."""
    secrets = list(secrets)
    if body is None:
        body = encode(document)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "missedcall"}
    headers.update(extra_headers or {})
    answer = request(url, body=body, headers=headers, timeout=timeout, cafile=cafile, secrets=secrets)
    if 200 <= answer.status < 300:
        return answer
    raise refusal(answer, [url, *secrets])


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def refusal(answer: Answer, secrets: Iterable[str]) -> ChatError:
    """What a non-2xx answer means: 429 and 5xx (and 408) temporary, with Retry-After; other 4xx permanent."""
    data = answer.json()
    said = ""
    retry_after = 0
    if isinstance(data, dict):
        said = str(data.get("description") or data.get("error") or data.get("message") or "")
        params = data.get("parameters")
        if isinstance(params, dict) and isinstance(params.get("retry_after"), int):
            retry_after = params["retry_after"]
    if not said:
        said = answer.body[:200].decode("utf-8", "replace").strip()
    if not retry_after:
        header = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after", "")
        retry_after = int(header) if header.strip().isdigit() and len(header.strip()) < 7 else 0
    retry_after = max(0, min(retry_after, RETRY_AFTER_MAX))
    temporary = answer.status in (408, 425, 429) or answer.status >= 500 or answer.status < 200
    message = f"HTTP {answer.status}" + (f": {said}" if said else "")
    if answer.status == 429 and retry_after:
        message += f" (retry after {retry_after} s)"
    return ChatError(scrub(message, secrets), temporary=temporary, status=answer.status, retry_after=retry_after)
