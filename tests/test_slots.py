"""The plain value classes that replaced dataclasses on the hook's path (missedcall.slots) behave like them."""

from __future__ import annotations

import copy
import pickle
from datetime import datetime, timezone

import pytest

from missedcall.config import Settings
from missedcall.dburl import DbTarget
from missedcall.detect.verdict import Verdict
from missedcall.record.model import CallRecord, Recipient
from missedcall.slots import replace


def _settings(**changes: object) -> Settings:
    db = DbTarget(kind="mysql", user="u", password="pw-s3cret", host="db", database="asterisk")
    values: dict[str, object] = {"smtp_password": "smtp-s3cret", "raw": {"MISSEDCALL_SMTP_PASSWORD": "smtp-s3cret"}}
    values.update(changes)
    return Settings(db=db, **values)  # type: ignore[arg-type]


def test_no_secret_in_a_repr() -> None:
    shown = repr(_settings())
    assert "s3cret" not in shown
    assert "DbTarget(kind='mysql'" in shown and "smtp_host='localhost'" in shown


def test_equality_and_hash_as_the_dataclasses_had_them() -> None:
    assert _settings() == _settings()
    assert _settings() != _settings(language="ru")
    assert _settings(raw={"x": "1"}) == _settings(raw={"x": "2"})  # raw takes no part (compare=False)
    assert hash(_settings()) == hash(_settings())
    call = CallRecord("1.1", "600", "ABANDON", "agi")
    assert call == CallRecord(callid="1.1", queue="600", reason="ABANDON", source="agi")
    assert call != CallRecord("1.1", "600", "ABANDON", "agi", extra={"did": "5"})
    with pytest.raises(TypeError):
        hash(call)  # mutable: unhashable, as a plain @dataclass


def test_frozen_ones_refuse_changes_mutable_ones_take_them() -> None:
    settings = _settings()
    with pytest.raises(AttributeError):
        settings.language = "ru"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Recipient("600", "a@example.com").email = "b@example.com"  # type: ignore[misc]
    call = CallRecord("1.1", "600", "ABANDON", "agi")
    call.status = "sent"
    assert call.status == "sent"
    with pytest.raises(AttributeError):
        call.no_such_field = 1  # type: ignore[attr-defined]


def test_defaults_are_fresh_per_instance() -> None:
    one, two = CallRecord("1.1", "600", "ABANDON", "agi"), CallRecord("1.2", "600", "ABANDON", "agi")
    one.extra["did"] = "5559000"
    assert two.extra == {}
    assert _settings().raw is not Settings(db=DbTarget(kind="sqlite", path="/x")).raw


def test_copy_deepcopy_pickle_and_replace() -> None:
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    values = [
        _settings(),
        CallRecord("1.1", "600", "ABANDON", "agi", ended_at=when, path=("600",), extra={"did": "5"}),
        Verdict(missed=True, queue="600", reason="ABANDON", path=("600",)),
        Recipient("600", "a@example.com"),
    ]
    for value in values:
        assert copy.copy(value) == value
        assert copy.deepcopy(value) == value
        assert pickle.loads(pickle.dumps(value)) == value
        assert replace(value) == value
    changed = replace(values[0], language="ru")
    assert changed.language == "ru" and changed.smtp_password == "smtp-s3cret" and values[0].language == "en"
    with pytest.raises(TypeError, match="no field"):
        replace(values[1], colour="red")
