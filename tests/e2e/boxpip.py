"""Python environments in the box: venvs, and pip reaching the index with the host's CA bundle."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union


class BoxPython:
    """Mixed into Pbx: needs ``path``, ``write_file`` and ``run``."""

    def path(self, inside: str) -> Path:
        raise NotImplementedError

    def write_file(
        self, inside: str, content: Union[str, bytes], *, mode: int = 0o644, owner: Optional[str] = None
    ) -> Path:
        raise NotImplementedError

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
        user: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        input: Optional[str] = None,
    ) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def pip_env(self) -> dict[str, str]:
        """Environment for a process in the box that should reach pip over HTTPS.

        pip in the box must use the host's CA bundle (copied in by
        host_ca_bundle()) and nothing of the host's PIP_*/proxy environment.
        """
        return {
            "PIP_CERT": self.host_ca_bundle(),
            "SSL_CERT_FILE": self.host_ca_bundle(),
            "REQUESTS_CA_BUNDLE": self.host_ca_bundle(),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }

    def host_ca_bundle(self) -> str:
        """Copy the host's CA bundle into the box; return its path inside."""
        inside = "/etc/ssl/certs/host-ca-bundle.crt"
        if not self.path(inside).exists():
            src = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
            self.write_file(inside, Path(src).read_bytes())
        return inside

    def make_venv(self, venv: str, *requirements: str, timeout: float = 600.0) -> str:
        """python3 -m venv VENV in the box and pip install requirements into it."""
        self.run(["python3", "-m", "venv", venv], timeout=120)
        if requirements:
            self.pip(venv, "install", *requirements, timeout=timeout)
        return f"{venv}/bin/python"

    def pip(self, venv: str, *args: str, timeout: float = 600.0) -> str:
        """VENV/bin/pip ARGS in the box, with the host's CA bundle and a clean env."""
        env = self.pip_env()
        return self.run([f"{venv}/bin/pip", *args], timeout=timeout, env=env).stdout
