"""The TLS context that verifies a relay's or a chat service's certificate, without reading every CA per call.

``ssl.create_default_context()`` parses the system's whole CA bundle (about 140 certificates) each time:
24 ms of CPU, a third of what a hang-up costs the hook when it mails over SMTP with TLS. Debian keeps the
same CAs one per file in OpenSSL's certificate directory (``/etc/ssl/certs``, whose ``<hash>.0`` links
update-ca-certificates makes for every CA it puts in the bundle, the admin's own included), and from a
directory OpenSSL reads only the CA a handshake asks for. So:

* ``MISSEDCALL_SMTP_CAFILE`` / ``MISSEDCALL_HTTP_CAFILE`` given: that file only, as before;
* ``SSL_CERT_FILE`` set, or no directory of hash links (RHEL, CentOS and SNG7 keep a bundle only): the
  system default, as before (``create_default_context()``);
* otherwise the default context with the directory as its only CA location, which trusts the same CAs
  on Debian. Verification, host name checks and protocol settings are ``create_default_context``'s own.

Nothing here relaxes a check: a certificate no CA vouches for is refused either way (tests/test_trust.py).

A long-running process (the FastAGI service) calls :func:`keep_contexts`: a context is then made once per
CA file and OpenSSL environment and shared by every connection and thread (``SSLContext`` is made for
that), instead of once per relay connection or chat post; :func:`forget` (on SIGHUP) drops them.
"""

from __future__ import annotations

import os
import ssl

_HEX = frozenset("0123456789abcdef")
_kept: dict[tuple[str, str, str], ssl.SSLContext] | None = None  # None: a new context per call (the hook)


def hashed_directory() -> str:
    """OpenSSL's CA directory (``SSL_CERT_DIR`` or the built-in one) when it holds ``<hash>.0`` links, else ""."""
    if os.environ.get("SSL_CERT_FILE"):
        return ""  # the admin named the file to trust: use it as OpenSSL would
    directory = ssl.get_default_verify_paths().capath  # None unless it is a directory
    if not directory:
        return ""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if len(name) == 10 and name.endswith(".0") and _HEX.issuperset(name[:8]):
                    return directory
    except OSError:
        pass
    return ""


def keep_contexts(keep: bool = True) -> None:
    global _kept
    _kept = {} if keep else None


def forget() -> None:
    """The kept contexts go (a reload: a CA file may have changed); the next connection makes its own."""
    if _kept is not None:
        _kept.clear()


def client_context(cafile: str = "") -> ssl.SSLContext:
    """A context that verifies the server against ``cafile``, else the system's CAs (see the module's doc).
    Raises what ``ssl`` raises for a CA file it cannot read."""
    kept = _kept
    if kept is None:
        return _new(cafile)
    key = (cafile, os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    context = kept.get(key)
    if context is None:  # two threads may both make one: the same, and the last stays (no lock needed)
        context = kept[key] = _new(cafile)
    return context


def _new(cafile: str) -> ssl.SSLContext:
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    directory = hashed_directory()
    return ssl.create_default_context(capath=directory) if directory else ssl.create_default_context()
