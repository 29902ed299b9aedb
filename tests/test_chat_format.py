"""Chat messages are inert whatever the caller ID: the suite's hostile table through every channel.

Pure tests of missedcall.deliver.chatformat and targets: for each hostile value as the
caller's name and number (and the queue label), each channel's document keeps to a
shape in which the value can only be text: Telegram's HTML has only our tags, Slack's
text has no ``<`` at all and every value in one code span, Mattermost's values sit in
one code span each, the Teams card has no link or mention form, the webhook JSON
parses strictly. Target parsing refuses or accepts every value with one short line.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from missedcall.deliver import chatformat, chatsend, targets
from missedcall.record.model import CallRecord
from tests.test_hostile import HOSTILE

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
_TAG = re.compile(r"<[^>]*>")
_OUR_TAGS = re.compile(r'</?b>|</?code>|<a href="tel:\+?[0-9]{1,20}">|</a>')
_ENTITY = re.compile(r"&(amp|lt|gt|quot);")
_FACT = re.compile(r"[^`]+: (`[^`]*`|—)")


def _call(value: str) -> CallRecord:
    return CallRecord(callid="1795900000.1", queue="600", reason="ABANDON", source="agi", caller_num=value,
                      caller_name=value, wait_seconds=12, ended_at=NOW, path=("600",))  # fmt: skip


def _documents(value: str) -> dict[str, dict]:
    call = _call(value)
    return {
        scheme: chatformat.single(scheme, "-100123", call, label=value, language="en", zone=timezone.utc, now=NOW)
        for scheme in ("telegram", "slack", "mattermost", "teams", "webhook")
    }


def _ids(value: str) -> str:
    return repr(value[:20])


@pytest.mark.parametrize("value", HOSTILE, ids=_ids)
def test_hostile_caller_ids_render_inert_in_every_channel(value: str) -> None:
    docs = _documents(value)
    # Telegram: only our tags; every & starts an entity; within the limit.
    text = docs["telegram"]["text"]
    assert all(_OUR_TAGS.fullmatch(tag) for tag in _TAG.findall(text)), text[:300]
    assert _TAG.sub("", text).count("<") == 0 and _TAG.sub("", text).count(">") == 0
    assert text.count("&") == len(_ENTITY.findall(text))
    assert chatformat.telegram_length(text) <= chatformat.TELEGRAM_MAX
    assert docs["telegram"]["parse_mode"] == "HTML"
    # Slack: no angle bracket at all (no <!channel>, no <url|text>), each value one code span.
    slack = docs["slack"]["text"]
    assert "<" not in slack and ">" not in slack and slack.count("&") == len(_ENTITY.findall(slack))
    for line in slack.split("\n")[1:]:
        assert _FACT.fullmatch(line), line[:200]
    # Mattermost: each value in one code span, so no @channel, @all or link is parsed.
    for line in docs["mattermost"]["text"].split("\n")[1:]:
        assert _FACT.fullmatch(line), line[:200]
    # Teams: no Markdown link, autolink or @mention form survives in any text.
    card = docs["teams"]["attachments"][0]["content"]
    shown = [card["body"][0]["text"], *(f["value"] for f in card["body"][1]["facts"])]
    for piece in shown:
        assert not re.search(r"\]\s*\(|://|www\.|@\w", piece), piece[:200]
    # webhook: strict JSON, valid UTF-8, the caller's text as data.
    for document in docs.values():
        raw = json.dumps(document, ensure_ascii=False).encode("utf-8")
        assert json.loads(raw.decode("utf-8")) == document
    assert docs["webhook"]["call"]["caller_name"] == value.encode("utf-8", "replace").decode("utf-8")[:512]


def test_the_usual_tricks_in_particular() -> None:
    docs = _documents("<!channel> @channel @here [click](https://evil.example/x) <https://evil.example|ok> &amp;")
    assert "<!channel>" not in docs["slack"]["text"] and "&lt;!channel&gt;" in docs["slack"]["text"]
    assert "`&lt;!channel&gt; @channel @here" in docs["slack"]["text"]
    assert "`<!channel> @channel @here [click](https://evil.example/x)" in docs["mattermost"]["text"]
    assert "<code>&lt;!channel&gt; @channel" in docs["telegram"]["text"]
    assert "&amp;amp;" in docs["telegram"]["text"]
    number = _documents("+1 (555) 010-9999 <script>")["telegram"]["text"]
    assert '<a href="tel:+15550109999">+1 (555) 010-9999 &lt;script&gt;</a>' in number
    assert "tel:" not in _documents("no digits")["telegram"]["text"]


def test_a_telegram_digest_stays_within_4096() -> None:
    calls = [_call("Я" * 300) for _ in range(200)]
    document = chatformat.digest("telegram", "-1", calls, language="ru", zone=timezone.utc, now=NOW)
    assert chatformat.telegram_length(document["text"]) <= chatformat.TELEGRAM_MAX
    assert "… и ещё" in document["text"]


@pytest.mark.parametrize("value", HOSTILE, ids=_ids)
def test_hostile_targets_are_refused_in_one_short_line(value: str) -> None:
    for scheme in ("", "telegram:", "slack:", "webhook:https://h/", "mailto:"):
        try:
            parsed = targets.parse(scheme + value)
        except targets.TargetError as exc:
            said = str(exc)
            assert "\n" not in said and "\r" not in said and len(said) < 300
            continue
        assert targets.problem(parsed.key) == "", parsed
        assert "," not in parsed.key and len(parsed.key) <= targets.KEY_MAX


def test_keys_are_short_unique_and_redacted() -> None:
    one = targets.parse("webhook:https://example.com/hooks/SECRET-ONE")
    two = targets.parse("webhook:https://example.com/hooks/SECRET-TWO")
    assert one.key != two.key and one.key.startswith("webhook:example.com/hooks/~")
    assert "SECRET" not in one.key and "SECRET" not in targets.show(one.stored_target)
    teams = targets.parse(  # the shape of a real Teams Workflows URL, about 300 characters
        "teams:https://prod-12.westeurope.logic.azure.com:443/workflows/" + "a" * 32 + "/triggers/manual/paths/invoke"
        "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=" + "S" * 43 + "&x=" + "b" * 50
    )
    assert len(teams.stored_target) > 254 and len(teams.key) <= targets.KEY_MAX and "SSSS" not in teams.key
    assert targets.parse("mailto:Ops@Example.com").key == "Ops@Example.com"
    assert targets.parse("telegram:@ops_channel").key == "telegram:@ops_channel"


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert chatsend.sign("Jefe", b"what do ya want for nothing?") == "sha256=" + expected
