"""doctor's check of the FastAGI service (docs/fastagi.md): its address parses, it listens, it runs
the installed version, and when it last had a session.

The check asks the service itself: a FastAGI session for the network script
``version``, which the service answers with one VERBOSE line
(``fastagi version=... pid=... sessions=... last_session=...``) and closes. No line
at all when the service is neither installed (``install.state``) nor configured.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from missedcall import __version__, config
from missedcall.admin.checks_access import FAIL, OK, WARN, Check
from missedcall.detect import listen

if TYPE_CHECKING:
    from missedcall.admin.doctor import Doctor

NAME = "fastagi"
PROBE_TIMEOUT = 3.0
START = "systemctl enable --now missedcall-fastagi (journalctl -u missedcall-fastagi says why it stopped)"


def probe(where: listen.Listen, timeout: float = PROBE_TIMEOUT) -> dict[str, str]:
    """The service's status words (``version``, ``pid``, ``sessions``, ``last_session``); raises OSError."""
    host = "127.0.0.1" if where.host == "0.0.0.0" else "::1" if where.host == "::" else where.host  # noqa: S104
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, where.port), timeout=timeout) as conn:
        url = listen.Listen(host, where.port).url("version")
        conn.sendall(
            (
                f"agi_network: yes\nagi_network_script: version\nagi_request: {url}\n"
                "agi_channel: missedcall-doctor\nagi_uniqueid: doctor\n\n"
            ).encode()
        )
        data = b""
        while b"\n" not in data and len(data) < 4096:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            conn.sendall(b"200 result=1\n")
        except OSError:
            pass  # it may have closed already: the line is what counts
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    words = dict(word.partition("=")[::2] for word in line.replace('"', " ").split() if "=" in word)
    if "version" not in words:
        raise OSError(f"it answered {line[:80]!r}, not missedcall's status line")
    return words


def check_fastagi(doc: Doctor) -> Check | None:
    installed = doc.state.get("service", "")
    raw = doc.settings.raw if doc.settings is not None else {}
    if not installed and not raw.get(listen.KEY):
        return None  # the process hook alone: nothing to say
    try:
        where = listen.from_raw(raw)
        listen.max_sessions(raw)
        listen.cache_seconds(raw)
    except config.ConfigError as exc:
        return Check(FAIL, NAME, str(exc), f"edit {doc.config_path} (docs/fastagi.md lists the keys)")
    if not installed:
        return Check(OK, NAME, f"{listen.KEY}={where} parses; the service is not installed", "")
    try:
        status = probe(where)
    except OSError as exc:
        detail = f"nothing answers on {where} ({exc.strerror or exc}): the dialplan falls back to missed.py"
        return Check(FAIL, NAME, detail, START)
    said = (
        f"listening on {where}, version {status['version']}, pid {status.get('pid', '?')},"
        f" {status.get('sessions', '?')} session(s) since it started, last {status.get('last_session', 'none')}"
    )
    refused = status.get("refused", "0")
    if refused not in ("0", ""):  # each of those calls fell back to missed.py: nothing lost, but slower
        said += f", {refused} refused over MISSEDCALL_FASTAGI_MAX_SESSIONS (missed.py took them)"
    if status["version"] != __version__:
        return Check(WARN, NAME, f"{said}; {__version__} is installed", "systemctl restart missedcall-fastagi")
    expected = where.url()
    if installed != expected and where.host not in ("0.0.0.0", "::"):  # noqa: S104
        fix = "sudo ./install.sh --service (writes the dialplan for the configured address)"
        return Check(WARN, NAME, f"{said}; but the dialplan was written for {installed}", fix)
    if not where.loopback:
        fix = "firewall the port to your PBXs: FastAGI has no login"
        return Check(WARN, NAME, f"{said}; reachable beyond loopback", fix)
    return Check(OK, NAME, said, "")
