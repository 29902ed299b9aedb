"""What a missed call is, and the one mapping between a call and its stored and JSON forms. Pure.

``CallRecord`` travels through the whole pipeline. It is stored as a row of
``missedcall_calls`` (:func:`to_row` / :func:`from_row`), written to the spool
and printed by ``log --json`` as a JSON object (:func:`to_dict` /
:func:`from_dict`). Keeping the three forms here means a column added to the
table cannot be forgotten in one of them. :func:`from_dict` reads untrusted
text (a spool file anyone in the Asterisk group may have written) and refuses
every value the rest of the pipeline could trip over.
"""

from __future__ import annotations

from datetime import datetime, timezone

from missedcall import text
from missedcall.slots import Frozen, Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the AGI imports this module
if TYPE_CHECKING:
    from typing import Any

CALL_STATUSES = ("pending", "held", "sent", "skipped", "failed")
CALL_COLUMNS = (
    "id", "callid", "linkedid", "queue", "path", "caller_num", "caller_name", "reason",
    "wait_seconds", "position", "entered_at", "ended_at", "source", "status", "attempts",
    "last_error", "recipients", "notified_at", "next_attempt_at", "did",
    "resolution", "resolved_at", "resolved_by", "talk_seconds", "caller_key", "message_id", "thread_of",
    "followup", "voicemail",
)  # fmt: skip
#: How a miss ended ('' while open); the report and ``--json`` call an open one "open".
RESOLUTIONS = ("", "called-back", "got-through")
FOLLOWUP_STATES = ("", "pending", "sent", "failed", "off")
RECIPIENT_COLUMNS = ("id", "queue", "email", "name", "created_at")
#: Column limits shared by both engines, so SQLite keeps what MariaDB would keep.
LIMITS = {"callid": 64, "linkedid": 64, "did": 64, "queue": 64, "path": 1024, "caller_num": 128,
          "caller_name": 512, "reason": 16, "source": 16, "status": 16, "last_error": 512,
          "resolution": 16, "resolved_by": 128, "caller_key": 32, "message_id": 255, "thread_of": 64,
          "followup": 16}  # fmt: skip
_TEXTS = ("callid", "linkedid", "queue", "caller_num", "caller_name", "reason", "source", "status", "last_error",
          "resolution", "resolved_by", "caller_key", "message_id", "thread_of", "followup")  # fmt: skip
_NUMBERS = {"wait_seconds": 10**7, "position": 10**6, "attempts": 10**4, "id": 2**31 - 1, "talk_seconds": 10**7}
_TIMES = ("entered_at", "ended_at", "notified_at", "next_attempt_at", "resolved_at")
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
#: How many items a list in a JSON form may hold (a queue path, the recipients of one call).
_MAX_ITEMS = 1000


class RecordError(ValueError):
    """A JSON form that is not a call we could have written; the message says which field."""


def is_callid(value: str) -> bool:
    """1 to 64 of ``[A-Za-z0-9._-]``: what a call id may be (the spool's file names rely on it)."""
    return 0 < len(value) <= 64 and _ID_CHARS.issuperset(value)


class CallRecord(Value):
    """One missed call, as recorded in ``missedcall_calls``."""

    __slots__ = (  # noqa: RUF023
        "callid", "queue", "reason", "source", "linkedid", "path", "caller_num", "caller_name", "wait_seconds",
        "position", "entered_at", "ended_at", "status", "attempts", "last_error", "recipients", "notified_at",
        "next_attempt_at", "id", "extra", "resolution", "resolved_at", "resolved_by", "talk_seconds", "caller_key",
        "message_id", "thread_of", "followup", "voicemail",
    )  # fmt: skip

    def __init__(
        self,
        callid: str,
        queue: str,
        reason: str,
        source: str,
        linkedid: str = "",
        path: tuple[str, ...] = (),
        caller_num: str = "",
        caller_name: str = "",
        wait_seconds: int | None = None,
        position: int | None = None,
        entered_at: datetime | None = None,
        ended_at: datetime | None = None,
        status: str = "pending",
        attempts: int = 0,
        last_error: str = "",
        recipients: tuple[str, ...] = (),
        notified_at: datetime | None = None,
        next_attempt_at: datetime | None = None,  # pending: not retried before then (back-off / claim lease)
        id: int | None = None,
        extra: dict[str, str] | None = None,  # "did": stored in the did column
        resolution: str = "",  # one of RESOLUTIONS
        resolved_at: datetime | None = None,
        resolved_by: str = "",  # the extension that called back or answered, with its name when known
        talk_seconds: int | None = None,
        caller_key: str = "",
        message_id: str = "",  # the first alert's Message-ID, which follow-ups and repeat misses reply to
        thread_of: str = "",  # a repeat miss: the callid of the open miss whose thread it joins
        followup: str = "",  # one of FOLLOWUP_STATES
        voicemail: bool = False,
    ) -> None:
        self.callid = callid
        self.queue = queue
        self.reason = reason
        self.source = source
        self.linkedid = linkedid
        self.path = path
        self.caller_num = caller_num
        self.caller_name = caller_name
        self.wait_seconds = wait_seconds
        self.position = position
        self.entered_at = entered_at
        self.ended_at = ended_at
        self.status = status
        self.attempts = attempts
        self.last_error = last_error
        self.recipients = recipients
        self.notified_at = notified_at
        self.next_attempt_at = next_attempt_at
        self.id = id
        self.extra = {} if extra is None else extra
        self.resolution = resolution
        self.resolved_at = resolved_at
        self.resolved_by = resolved_by
        self.talk_seconds = talk_seconds
        self.caller_key = caller_key
        self.message_id = message_id
        self.thread_of = thread_of
        self.followup = followup
        self.voicemail = voicemail


class Recipient(Frozen):
    __slots__ = ("queue", "email", "name", "id", "created_at")  # noqa: RUF023

    def __init__(
        self, queue: str, email: str, name: str = "", id: int | None = None, created_at: datetime | None = None
    ) -> None:
        self._set(queue=queue, email=email, name=name, id=id, created_at=created_at)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# --- stored form ---------------------------------------------------------------------------


def db_value(value: Any) -> Any:
    """A query parameter as both engines store it (times: naive UTC text)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def db_time(value: Any) -> datetime | None:
    """A stored time (SQLite text or a MariaDB ``datetime``) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = _stored_time(value[:19])
    return value.replace(tzinfo=timezone.utc)


def _stored_time(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` as a naive datetime, as strptime would read it (strptime costs an import)."""
    if len(text) != 19 or text[4] != "-" or text[7] != "-" or text[10] != " " or text[13] != ":" or text[16] != ":":
        raise ValueError(f"time data {text!r} does not match format '%Y-%m-%d %H:%M:%S'")
    parts = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"time data {text!r} does not match format '%Y-%m-%d %H:%M:%S'")
    year, month, day, hour, minute, second = (int(part) for part in parts)
    return datetime(year, month, day, hour, minute, second)


def clip(column: str, value: Any) -> Any:
    """``value`` cut to its column's limit."""
    limit = LIMITS.get(column)
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


def to_row(call: CallRecord) -> dict[str, Any]:
    """The call as column values (without ``id``), clipped to the columns' limits."""
    values: dict[str, Any] = {
        "callid": call.callid,
        "linkedid": call.linkedid,
        "queue": call.queue,
        "path": " > ".join(call.path),
        "caller_num": call.caller_num,
        "caller_name": call.caller_name,
        "reason": call.reason,
        "wait_seconds": call.wait_seconds,
        "position": call.position,
        "entered_at": call.entered_at,
        "ended_at": call.ended_at,
        "source": call.source,
        "status": call.status,
        "attempts": call.attempts,
        "last_error": call.last_error,
        "recipients": ",".join(call.recipients),
        "notified_at": call.notified_at,
        "next_attempt_at": call.next_attempt_at,
        "did": call.extra.get("did", ""),
        "resolution": call.resolution,
        "resolved_at": call.resolved_at,
        "resolved_by": call.resolved_by,
        "talk_seconds": call.talk_seconds,
        "caller_key": call.caller_key or text.caller_key(call.caller_num),
        "message_id": call.message_id,
        "thread_of": call.thread_of,
        "followup": call.followup,
        "voicemail": 1 if call.voicemail else 0,
    }
    return {name: clip(name, value) for name, value in values.items()}


def row_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Some columns' new values (``update_call``'s keywords) in stored form."""
    unknown = set(fields) - set(CALL_COLUMNS)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}")
    out = dict(fields)
    if "recipients" in out and not isinstance(out["recipients"], str):
        out["recipients"] = ",".join(out["recipients"])
    if "path" in out and not isinstance(out["path"], str):
        out["path"] = " > ".join(out["path"])
    return {name: clip(name, value) for name, value in out.items()}


def from_row(values: tuple[Any, ...] | list[Any]) -> CallRecord:
    """A row selected as ``SELECT <CALL_COLUMNS> ...``."""
    row = dict(zip(CALL_COLUMNS, values))
    return CallRecord(
        id=row["id"],
        callid=row["callid"],
        linkedid=row["linkedid"] or "",
        queue=row["queue"],
        path=tuple(p for p in (row["path"] or "").split(" > ") if p),
        caller_num=row["caller_num"] or "",
        caller_name=row["caller_name"] or "",
        reason=row["reason"],
        wait_seconds=row["wait_seconds"],
        position=row["position"],
        entered_at=db_time(row["entered_at"]),
        ended_at=db_time(row["ended_at"]),
        source=row["source"],
        status=row["status"],
        attempts=int(row["attempts"] or 0),
        last_error=row["last_error"] or "",
        recipients=tuple(a for a in (row["recipients"] or "").split(",") if a),
        notified_at=db_time(row["notified_at"]),
        next_attempt_at=db_time(row["next_attempt_at"]),
        extra={"did": row["did"]} if row["did"] else {},
        resolution=row["resolution"] or "",
        resolved_at=db_time(row["resolved_at"]),
        resolved_by=row["resolved_by"] or "",
        talk_seconds=row["talk_seconds"],
        caller_key=row["caller_key"] or "",
        message_id=row["message_id"] or "",
        thread_of=row["thread_of"] or "",
        followup=row["followup"] or "",
        voicemail=bool(row["voicemail"]),
    )


# --- JSON form -----------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment else None


def to_dict(call: CallRecord) -> dict[str, Any]:
    """The call as a JSON object keyed by the table's columns (``log --json``, spool files), texts clipped
    to their columns' limits as a row would keep them."""
    data = {
        "id": call.id,
        "callid": call.callid,
        "linkedid": call.linkedid,
        "queue": call.queue,
        "path": list(call.path),
        "caller_num": call.caller_num,
        "caller_name": call.caller_name,
        "reason": call.reason,
        "wait_seconds": call.wait_seconds,
        "position": call.position,
        "entered_at": iso(call.entered_at),
        "ended_at": iso(call.ended_at),
        "source": call.source,
        "status": call.status,
        "attempts": call.attempts,
        "last_error": call.last_error,
        "recipients": list(call.recipients),
        "notified_at": iso(call.notified_at),
        "next_attempt_at": iso(call.next_attempt_at),
        "did": call.extra.get("did", ""),
        "resolution": call.resolution,
        "resolved_at": iso(call.resolved_at),
        "resolved_by": call.resolved_by,
        "talk_seconds": call.talk_seconds,
        "caller_key": call.caller_key,
        "message_id": call.message_id,
        "thread_of": call.thread_of,
        "followup": call.followup,
        "voicemail": call.voicemail,
    }
    return {name: clip(name, value) for name, value in data.items()}


def from_dict(data: Any) -> CallRecord:
    """The call a JSON object describes; raises RecordError naming the first value that is not right.

    Every value is checked for type and range, so a hand-edited or hostile file
    cannot crash whoever reads it later (a list where text goes, year 1 with an
    offset, a 30-digit count, a megabyte of text).
    """
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    texts = {name: _text(data, name) for name in _TEXTS}
    if not is_callid(texts["callid"]):
        raise RecordError("callid is not a call id")
    if texts["status"] not in CALL_STATUSES:
        raise RecordError(f"status {texts['status'][:20]!r} is not one of {', '.join(CALL_STATUSES)}")
    if texts["resolution"] not in RESOLUTIONS:
        raise RecordError("resolution is not one of called-back, got-through or empty")
    if texts["followup"] not in FOLLOWUP_STATES:
        raise RecordError("followup is not a follow-up state")
    if texts["thread_of"] and not is_callid(texts["thread_of"]):
        raise RecordError("thread_of is not a call id")
    voicemail = data.get("voicemail", False)
    if not isinstance(voicemail, bool):
        raise RecordError("voicemail is not true or false")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) and len(v) <= 64 for v in extra.values()):
        raise RecordError("extra is not a map of short texts")
    did = data.get("did", extra.get("did", ""))  # version 1 spool files kept the DID under "extra"
    if not isinstance(did, str) or len(did) > LIMITS["did"] or not _utf8(did):
        raise RecordError("did is not a short text")
    times = {name: _time(data, name) for name in _TIMES}
    numbers = {name: _number(data, name) for name in _NUMBERS}
    return CallRecord(
        **texts,
        id=numbers["id"],
        path=_texts(data, "path", LIMITS["path"]),
        recipients=_texts(data, "recipients", 254),
        wait_seconds=numbers["wait_seconds"],
        position=numbers["position"],
        attempts=numbers["attempts"] or 0,
        talk_seconds=numbers["talk_seconds"],
        **times,
        extra={"did": did} if did else {},
        voicemail=voicemail,
    )


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise RecordError(f"{name} is not text")
    if len(value) > LIMITS[name]:
        raise RecordError(f"{name} is longer than {LIMITS[name]} characters")
    if not _utf8(value):
        raise RecordError(f"{name} is not UTF-8 text")
    return value


def _utf8(value: str) -> bool:
    """False for text no database can store (a lone surrogate from a JSON ``\\ud800`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _texts(data: dict[str, Any], name: str, limit: int) -> tuple[str, ...]:
    value = data.get(name) or []
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise RecordError(f"{name} is not a list")
    if not all(isinstance(item, str) and 0 < len(item) <= limit and _utf8(item) for item in value):
        raise RecordError(f"{name} holds something that is not a short text")
    return tuple(value)


def _number(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _NUMBERS[name]:
        raise RecordError(f"{name} is not a number from 0 to {_NUMBERS[name]}")
    return value


def _time(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise RecordError(f"{name} is not a time")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        stamp = moment.timestamp()  # year 1 or 9999 with an offset overflow here, not later
        moment = moment.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise RecordError(f"{name} is not a time") from None
    # A retry lease may lie ahead of now; no call lies before 2000 or far in the future.
    if not text.plausible_epoch(stamp, None if name != "next_attempt_at" else stamp):
        raise RecordError(f"{name} {value[:40]!r} is out of range")
    return moment
