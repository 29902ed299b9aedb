"""``Settings``: every setting, validated, in one frozen value (built by missedcall.config.load_settings).

Kept apart from missedcall.config, which reads and checks the values, and re-exported by it:
``from missedcall.config import Settings`` is the usual spelling.
"""

from __future__ import annotations

from missedcall.slots import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from collections.abc import Mapping

    from missedcall.dburl import DbTarget

#: Every reason the product knows, in queue_log's vocabulary (docs/design.md).
REASONS = (
    "ABANDON",
    "TIMEOUT",
    "EXITEMPTY",
    "JOINEMPTY",
    "LEAVEEMPTY",
    "JOINUNAVAIL",
    "LEAVEUNAVAIL",
    "FULL",
    "EXITWITHKEY",
)


class Settings(Frozen):
    """Every setting, validated. ``smtp_password`` and ``raw`` never show in ``repr()``."""

    __slots__ = (  # noqa: RUF023
        "db", "transport", "sendmail", "smtp_host", "smtp_port", "smtp_user", "smtp_password", "smtp_security",
        "smtp_cafile", "smtp_timeout", "mail_from", "fallback_to", "language", "template_dir", "reasons",
        "min_wait", "queue_log", "flood_limit", "flood_window", "spool_dir", "timezone", "config_path",
        "freepbx_conf", "is_freepbx", "unknown_keys", "raw",
    )  # fmt: skip
    _hidden = ("smtp_password", "raw")
    _uncompared = ("raw",)

    def __init__(
        self,
        db: DbTarget,
        transport: str = "sendmail",
        sendmail: str = "/usr/sbin/sendmail",
        smtp_host: str = "localhost",
        smtp_port: int = 25,
        smtp_user: str = "",
        smtp_password: str = "",
        smtp_security: str = "none",
        smtp_cafile: str = "",
        smtp_timeout: float = 10.0,
        mail_from: str = "",
        fallback_to: tuple[str, ...] = (),
        language: str = "en",
        template_dir: str = "",
        reasons: frozenset[str] = frozenset(REASONS),
        min_wait: int = 0,
        queue_log: str = "/var/log/asterisk/queue_log",
        flood_limit: int = 20,
        flood_window: int = 5,
        spool_dir: str = "/var/spool/missedcall",
        timezone: str = "",
        config_path: str = "",
        freepbx_conf: str = "/etc/freepbx.conf",
        is_freepbx: bool = False,
        unknown_keys: tuple[str, ...] = (),  # MISSEDCALL_* keys that mean nothing (a typo?): doctor WARNs
        raw: Mapping[str, str] | None = None,
    ) -> None:
        self._set(
            db=db, transport=transport, sendmail=sendmail, smtp_host=smtp_host, smtp_port=smtp_port,
            smtp_user=smtp_user, smtp_password=smtp_password, smtp_security=smtp_security,
            smtp_cafile=smtp_cafile, smtp_timeout=smtp_timeout, mail_from=mail_from, fallback_to=fallback_to,
            language=language, template_dir=template_dir, reasons=reasons, min_wait=min_wait,
            queue_log=queue_log, flood_limit=flood_limit, flood_window=flood_window, spool_dir=spool_dir,
            timezone=timezone, config_path=config_path, freepbx_conf=freepbx_conf, is_freepbx=is_freepbx,
            unknown_keys=unknown_keys,
            # Every MISSEDCALL_* value as read (file, then environment): the features off the hook's path
            # parse their own keys from it. Holds secrets: never printed.
            raw={} if raw is None else raw,
        )  # fmt: skip
