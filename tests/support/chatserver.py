"""A real HTTPS server on 127.0.0.1 that answers like the Telegram Bot API and chat webhooks do.

One threaded ``http.server`` with TLS from the suite's self-signed certificate
(tests/support/smtp.make_tls_certificate, made with ``openssl``). Every request
is recorded (path, headers, raw body). What it answers:

Telegram, ``/bot<TOKEN>/<method>`` (a wrong token: 401 Unauthorized, as the real API):

- ``sendMessage`` by chat_id: ``-403`` 403 "Forbidden: bot was blocked by the user";
  ``-400`` 400 "Bad Request: chat not found"; ``-429`` 429 with parameters.retry_after;
  ``-111`` 400 with parameters.migrate_to_chat_id = -1001111; ``-502`` 502; any other 200.
- ``getMe`` (the bot), ``getChat`` (a supergroup, or 400 for ``-400``).

Webhooks by path: ``/ok/...`` 200 (Teams Workflows: 202), ``/gone/...`` 404, ``/fail/...`` 500,
``/limit/...`` 429 with Retry-After, ``/slow/...`` accepts and never answers (until stopped).

``script[key]`` (a chat id or a path) overrides with a list of statuses used one per request.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "123456:TEST-token_abcdefghijklmnopqrstuvw"
MIGRATED = -1001111
RETRY_AFTER = 120


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class ChatServer:
    cert: Path
    key: Path
    tls: bool = True
    seen: list[Seen] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> ChatServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                owner.seen.append(Seen("HEAD", self.path, dict(self.headers.items()), b""))
                self._answer(405, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                owner.seen.append(Seen("POST", self.path, dict(self.headers.items()), body))
                status, answer, headers = owner.respond(self.path, body)
                if status == 0:  # never answer
                    owner._stop.wait(60)
                    return
                self._answer(status, answer, headers)

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    # -- answers -----------------------------------------------------------------------------

    def respond(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if path.startswith("/bot"):
            return self._telegram(path, body)
        kind = path.strip("/").split("/")[0]
        scripted = self._scripted(path)
        if scripted is not None:
            return scripted, b"{}" if scripted < 300 else b"scripted failure", {}
        if kind == "ok":
            return (202 if "workflows" in path else 200), b"ok", {}
        if kind == "gone":
            return 404, b"no_service", {}
        if kind == "fail":
            return 500, b"internal error", {}
        if kind == "limit":
            return 429, b"rate_limited", {"Retry-After": str(RETRY_AFTER)}
        if kind == "slow":
            return 0, b"", {}
        return 404, b"not found", {}

    def _scripted(self, key: str) -> int | None:
        steps = self.script.get(key)
        if steps:
            return steps.pop(0)
        return None

    def _telegram(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        token, _, method = path[len("/bot") :].partition("/")
        if token != TOKEN:
            return _tg(401, "Unauthorized")
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except ValueError:
            return _tg(400, "Bad Request: can't parse JSON")
        if method == "getMe":
            return _ok({"id": 123456, "is_bot": True, "first_name": "PBX", "username": "pbx_test_bot"})
        chat = str(data.get("chat_id", ""))
        scripted = self._scripted(chat)
        if scripted is not None:
            return _ok({"message_id": 1}) if scripted < 300 else _tg(scripted, "Internal Server Error")
        if method == "getChat":
            if chat == "-400":
                return _tg(400, "Bad Request: chat not found")
            return _ok({"id": int(chat) if chat.lstrip("-").isdigit() else 1, "type": "supergroup", "title": "Ops"})
        if method != "sendMessage":
            return _tg(404, "Not Found")
        if not data.get("text"):
            return _tg(400, "Bad Request: message text is empty")
        if chat == "-403":
            return _tg(403, "Forbidden: bot was blocked by the user")
        if chat == "-400":
            return _tg(400, "Bad Request: chat not found")
        if chat == "-429":
            return _tg(429, f"Too Many Requests: retry after {RETRY_AFTER}", {"retry_after": RETRY_AFTER})
        if chat == "-111":
            return _tg(400, "Bad Request: group chat was upgraded to a supergroup chat",
                       {"migrate_to_chat_id": MIGRATED})  # fmt: skip
        if chat == "-502":
            return 502, b"<html>Bad Gateway</html>", {}
        return _ok({"message_id": len(self.seen), "chat": {"id": chat}, "text": data["text"]})

    def telegram_texts(self, chat: str) -> list[str]:
        return [
            s.json()["text"] for s in self.seen
            if s.path.endswith("/sendMessage") and str(s.json().get("chat_id")) == chat
        ]  # fmt: skip

    def posts(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.startswith(prefix)]


def _ok(result: Any) -> tuple[int, bytes, dict[str, str]]:
    return 200, json.dumps({"ok": True, "result": result}).encode(), {}


def _tg(code: int, description: str, parameters: dict[str, Any] | None = None) -> tuple[int, bytes, dict[str, str]]:
    data: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        data["parameters"] = parameters
    return code, json.dumps(data).encode(), {}
