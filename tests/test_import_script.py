"""Reading the article's hand-written hook (and its common variants) into queue → address rules.

The scripts under tests/fixtures/scripts are written the way admins wrote them
after the article; every expected value below is read off the script by eye,
not produced by the code under test.
"""

from __future__ import annotations

import subprocess

import pytest

from missedcall.admin.scriptimport import ScriptError, read_script
from tests.paths import FIXTURES

SCRIPTS = FIXTURES / "scripts"


def rules(text: str) -> dict[str, list[str]]:
    return {rule.queue: rule.addresses for rule in read_script(text).rules}


@pytest.mark.parametrize("name", ["noanswer-article.sh", "noanswer-ifelif.sh", "noanswer-sendmail.sh"])
def test_fixture_scripts_are_valid_bash(name: str) -> None:
    # The fixtures must be scripts bash itself accepts, or the reader is tested on fiction.
    subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True)


def test_the_article_script() -> None:
    imported = read_script((SCRIPTS / "noanswer-article.sh").read_text(encoding="utf-8"))
    assert [(r.queue, r.addresses) for r in imported.rules] == [
        ("600", ["sales@example.ru"]),
        ("601", ["support@example.ru", "boss@example.ru"]),
        ("602", ["support@example.ru", "boss@example.ru"]),
        ("*", ["admin@example.ru"]),
    ]
    subjects = {r.queue: r.subject for r in imported.rules}
    assert subjects["600"] == "Пропущенный звонок: отдел продаж"
    assert subjects["601"] == "Missed call: support (601)"  # "$3" in the subject reads as the queue
    assert imported.notes == []


def test_if_elif_chain_with_variables_set_at_the_top() -> None:
    imported = read_script((SCRIPTS / "noanswer-ifelif.sh").read_text(encoding="utf-8"))
    assert [(r.queue, r.addresses, r.label) for r in imported.rules] == [
        ("600", ["sales@example.com"], "Отдел продаж"),
        ("601", ["support@example.com", "boss@example.com"], "Support"),
        ("602", ["night@example.com"], ""),
        ("*", ["boss@example.com"], ""),
    ]


def test_sendmail_with_a_here_document_and_a_query() -> None:
    # The headers live in the here-document, so the addresses come from the branch's own variable;
    # the query's text (with its quotes) and the body's "don't" never confuse the reader.
    assert rules((SCRIPTS / "noanswer-sendmail.sh").read_text(encoding="utf-8")) == {
        "700": ["queue700@example.org"],
        "701": ["a@example.org", "b@example.org"],
    }


def test_addresses_straight_on_the_mail_command() -> None:
    script = """
case "$3" in
  600) mail -s "Missed $2" -c cc@example.com one@example.com two@example.com < /tmp/body ;;
  601) echo x | mutt -s 'Missed' -- three@example.com ;;
esac
"""
    assert rules(script) == {
        "600": ["cc@example.com", "one@example.com", "two@example.com"],
        "601": ["three@example.com"],
    }


def test_option_values_are_not_taken_for_addresses() -> None:
    script = """case $3 in 600) mail -r noreply@pbx.example.com -s subject real@example.com;; esac"""
    assert rules(script) == {"600": ["real@example.com"]}


def test_comments_quotes_and_semicolons_inside_strings() -> None:
    script = """
# case "$3" in 999) x@example.com ;; esac   <- a comment, not a rule
ADDR="a@example.com; b@example.com"   # it's a list
case ${3} in
    600|601) TO="$ADDR" ;;   # two queues, one team
esac
mail -s "don't; panic" $TO
"""
    assert rules(script) == {"600": ["a@example.com", "b@example.com"], "601": ["a@example.com", "b@example.com"]}


def test_no_dispatch_means_one_rule_for_every_queue() -> None:
    imported = read_script('mail -s "Missed call" ops@example.com\n')
    assert [(r.queue, r.addresses) for r in imported.rules] == [("*", ["ops@example.com"])]
    assert imported.notes == ["no case or if on the queue number: every queue goes to the same addresses"]


def test_a_branch_without_an_address_is_reported_with_its_line() -> None:
    imported = read_script('case "$3" in\n600) TO=a@example.com ;;\n601) TO="" ;;\nesac\nmail -s x $TO\n')
    assert rules_of(imported) == {"600": ["a@example.com"], "601": []}
    assert imported.notes == ["line 3: no address found for queue 601"]


def rules_of(imported: object) -> dict[str, list[str]]:
    return {rule.queue: rule.addresses for rule in imported.rules}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('case "$3" in\n600) TO="a@example.com ;;\nesac\n', "line 2: unterminated double quote"),
        ("TO='a@example.com\n", "line 1: unterminated single quote"),
        ('case "$3" in\n600) TO=a@example.com ;;\n', "line 1: 'case' without 'esac'"),
        ('if [ "$3" = 600 ]; then\nTO=a@example.com\n', "line 1: 'if' without 'fi'"),
        ("X=$(date\n", "line 1: unterminated command substitution"),
        ("echo hello\n", "no queue → address rule found (expected a case or if on the queue and a mail command)"),
        ("\x00\x01ELF", "this is not a shell script (it contains NUL bytes)"),
    ],
)
def test_scripts_it_cannot_read_give_one_line(script: str, message: str) -> None:
    with pytest.raises(ScriptError) as caught:
        read_script(script)
    assert str(caught.value) == message
