"""The From address when MISSEDCALL_FROM is empty, as ``missedcall-admin init`` worked it out.

Two one-line files beside the configuration file, written by ``init`` (which install.sh runs
on every install and upgrade) and read by every hook run through ``config.load_settings``:

* ``freepbx-from``: FreePBX's own Email "From:" Address (missedcall.admin.sender), which
  would otherwise take a database query per call and be lost while the database is down;
* ``host-from``: ``missedcall@<this host's FQDN>``. Finding the FQDN is a DNS look-up
  (``socket.getfqdn``), which the hook must never make: it cannot be bounded, and with a
  broken resolver it takes seconds of a caller's hang-up. Without the copy (init never ran)
  the hook uses the kernel's host name as it is (``missedcall@<nodename>``).

Both are addresses, no secret (0644). They are derived from the configuration and go with
the code on uninstall.
"""

from __future__ import annotations

import os
import stat

FREEPBX = "freepbx-from"
HOST = "host-from"
_MAX = 300  # one address and a line break, with room to spare; a longer file is not one of ours


def path(config_path: str, which: str) -> str:
    """Where the ``which`` copy (FREEPBX or HOST) of the configuration at ``config_path`` lives."""
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), which)


def read(config_path: str, which: str) -> str:
    """That copy's one line, or "" when there is none; the caller checks it is an address."""
    try:
        # The hook reads this on every run: a FIFO or device put there must not block or flood it.
        fd = os.open(path(config_path, which), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, _MAX).decode("utf-8", "replace").strip()  # bounded: it holds one address
    except OSError:
        return ""
    finally:
        os.close(fd)


def write(config_path: str, which: str, address: str) -> str:
    """Keep ``address`` as the ``which`` copy (atomically), or remove the copy when ``address`` is "".

    Returns "" or the reason it could not (one line, for init's output).
    """
    target = path(config_path, which)
    try:
        if address:
            temporary = f"{target}.tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(address + "\n")
            os.chmod(temporary, 0o644)  # an address, no secret: the asterisk user reads it
            os.replace(temporary, target)
        elif os.path.lexists(target):
            os.unlink(target)
    except OSError as exc:
        return f"cannot write {target} ({exc.strerror})"
    return ""

