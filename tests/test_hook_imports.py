"""A guard on what the AGI hook imports (not a timing): each hang-up pays for every module it loads.

The real agi-bin/missed.py runs against the scripted Asterisk 22 peer, in a fresh
interpreter that writes its ``sys.modules`` to a file when the hook is done. Modules
that cost a hang-up more than they give it must not come back on the hook's path:
``dataclasses`` (and ``inspect``), ``typing``, ``logging``, pyst2 and ``six``, and, with
the settings cache in place, python-dotenv; the ``email`` package (missedcall.deliver.mime writes
our mails), and the modules a mailed call does without (MAILED_NEVER); and for a call that is not
mailed, no database module either.
The settings cache itself (missedcall.settingscache) is tested here too.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from missedcall import config, settingscache
from tests.agibox import Pbx, make_pbx
from tests.agipeer import AgiPeer, make_headers
from tests.mailbox import read_mail
from tests.paths import MISSED_PY

#: Runs the hook as Asterisk would and then writes the names in sys.modules to argv[1].
DUMP_MODULES = """\
import os, sys

def _exit(code):  # hook.run() leaves with os._exit: come back here to write the list
    raise SystemExit(code)

os._exit = _exit
hook, dump = sys.argv[1], sys.argv[2]
before = set(sys.modules)  # an editable install's start-up finder loads pathlib and more before the hook
sys.argv = [hook, *sys.argv[3:]]
with open(hook, encoding="utf-8") as handle:
    code = compile(handle.read(), hook, "exec")
try:
    exec(code, {"__name__": "__main__", "__file__": hook})
except SystemExit:
    pass
with open(dump, "w", encoding="utf-8") as handle:
    handle.write("\\n".join(sorted(sys.modules)))
with open(dump + ".added", "w", encoding="utf-8") as handle:
    handle.write("\\n".join(sorted(set(sys.modules) - before)))
"""
NEVER = ("dataclasses", "inspect", "typing", "logging", "six", "asterisk", "asterisk.agi", "dotenv", "_strptime")
#: What a mailed call on SQLite with a sendmail does without, each a few milliseconds of imports a call:
#: ``re`` with ``enum`` (templates, checks and the settings cache are written without them), ``json``
#: (spool files are read and written only when a call is spooled), ``string``, ``contextlib``, and
#: ``signal`` (its C half, ``_signal``, is loaded at every start-up anyway).
MAILED_NEVER = (
    "email", "pathlib", "urllib", "urllib.parse", "re", "enum", "json", "string", "contextlib", "signal",
)  # fmt: skip


@pytest.fixture
def pbx(tmp_path: Path, sqlite_url: str) -> Pbx:
    box = make_pbx(tmp_path, sqlite_url)
    _cache_now(box.config_file)
    return box


def _cache_now(path: Path) -> dict[str, str]:
    """Parse the file as the CLI does and leave the cache, without waiting out SETTLE."""
    saved = settingscache.SETTLE
    settingscache.SETTLE = -1.0
    try:
        return config.read_env_file(str(path), strict=True)
    finally:
        settingscache.SETTLE = saved


def _modules_after(pbx: Pbx, peer: AgiPeer, args: list[str], *, added: bool = False) -> set[str]:
    """The names in sys.modules when the hook is done (``added``: only those the hook itself loaded)."""
    dump = pbx.tmp / "modules.txt"
    argv = [sys.executable, "-c", DUMP_MODULES, str(MISSED_PY), str(dump), *args]
    run = peer.run(argv, env=pbx.environ(), timeout=15)
    assert run.ok, run
    return set(Path(f"{dump}.added" if added else dump).read_text(encoding="utf-8").split("\n"))


def _abandon(callid: str, variables: dict[str, str]) -> AgiPeer:
    headers = make_headers(uniqueid=callid, callerid="79161234567", calleridname="Caller", args=["600"])
    return AgiPeer(headers, variables)


def test_a_mailed_call_loads_no_dataclasses_typing_logging_pyst2_or_dotenv(pbx: Pbx) -> None:
    modules = _modules_after(pbx, _abandon("1795659165.1", {"ABANDONED": "TRUE"}), ["600"], added=True)
    assert [mail.message["X-Missedcall-Callid"] for mail in read_mail(pbx.maildir)] == ["1795659165.1"]
    assert "missedcall.deliver.mime" in modules and "sqlite3" in modules  # the guard sees what the hook loads
    assert sorted(m for m in (*NEVER, *MAILED_NEVER) if m in modules) == []


def test_without_missedcall_from_the_hook_makes_no_dns_look_up(pbx: Pbx) -> None:
    """From is then the FQDN that init kept (missedcall.fromcopy): ``socket.getfqdn`` is never called on a
    hang-up, where a broken resolver would hold the call for seconds; ``socket`` is not even imported."""
    pbx.configure(MISSEDCALL_FROM=None)
    _cache_now(pbx.config_file)
    (pbx.config_file.parent / "host-from").write_text("missedcall@pbx.example.com\n")
    modules = _modules_after(pbx, _abandon("1795659165.3", {"ABANDONED": "TRUE"}), ["600"], added=True)
    [mail] = read_mail(pbx.maildir)
    assert mail.message["From"] == "missedcall@pbx.example.com"
    assert "socket" not in modules and "missedcall.deliver.mime" in modules


def test_a_call_that_is_not_missed_loads_no_email_either(pbx: Pbx) -> None:
    modules = _modules_after(pbx, _abandon("1795659165.2", {"ABANDONED": "FALSE"}), ["600"])
    assert read_mail(pbx.maildir) == []
    assert "missedcall.detect.verdict" in modules
    assert sorted(m for m in (*NEVER, "email", "sqlite3", "pymysql") if m in modules) == []


def test_without_the_cache_the_hook_still_reads_the_file_with_dotenv(pbx: Pbx) -> None:
    os.unlink(settingscache.cache_path(str(pbx.config_file)))
    pbx.configure(MISSEDCALL_FALLBACK_TO="fallback@example.com")  # a fresh file: too new to be cached
    modules = _modules_after(pbx, _abandon("1795659165.3", {"ABANDONED": "TRUE"}), ["777"])
    [mail] = read_mail(pbx.maildir)
    assert "fallback@example.com" in mail.recipients
    assert "dotenv" in modules
    assert not os.path.exists(settingscache.cache_path(str(pbx.config_file)))


# --- the cache ---------------------------------------------------------------------------------


def _write(path: Path, text: str, mode: int = 0o640) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def test_the_cache_has_the_files_owner_group_and_mode_and_the_same_values(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_SMTP_PASSWORD='s3cr$t'\nMISSEDCALL_FROM=pbx@example.com\n", 0o640)
    parsed = _cache_now(conf)
    cache = Path(settingscache.cache_path(str(conf)))
    info, source = cache.stat(), conf.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (source.st_uid, source.st_gid, 0o640)
    assert config.read_env_file(str(conf)) == parsed == {
        "MISSEDCALL_SMTP_PASSWORD": "s3cr$t",
        "MISSEDCALL_FROM": "pbx@example.com",
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_strict_reads_ignore_the_cache_and_still_report_a_bad_line(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=pbx@example.com\n'unclosed\n")
    with pytest.raises(config.ConfigError, match="cannot parse"):
        _cache_now(conf)
    # Lenient, the line is skipped (as python-dotenv does), and that reading may be cached.
    assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "pbx@example.com"}


def test_an_edit_makes_the_cache_stale(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\n")
    _cache_now(conf)
    _write(conf, "MISSEDCALL_FROM=b@example.com\n")  # same size, new ctime
    assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "b@example.com"}


def test_a_cache_with_another_mode_or_a_symlink_is_not_believed(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\n")
    _cache_now(conf)
    cache = Path(settingscache.cache_path(str(conf)))
    forged = cache.read_text(encoding="utf-8").replace("a@example.com", "evil@example.com")
    cache.unlink()
    _write(cache, forged, 0o644)  # readable by all: not what the file's owner would have left
    assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "a@example.com"}
    cache.unlink()
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere, forged)
    cache.symlink_to(elsewhere)
    assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "a@example.com"}


def test_a_torn_or_foreign_cache_is_not_believed(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\n")
    cache = Path(settingscache.cache_path(str(conf)))
    for junk in ('{"key": [1', "[]", '{"key": [], "values": {}}', "\xff\xfe", settingscache.MAGIC, ""):
        _write(cache, junk)
        assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "a@example.com"}


def test_a_cut_or_padded_cache_is_not_believed(tmp_path: Path) -> None:
    """The count of values guards the end: a cache cut between two values, or with one added, is refused."""
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\nMISSEDCALL_LANGUAGE=ru\n")
    _cache_now(conf)
    cache = Path(settingscache.cache_path(str(conf)))
    whole = cache.read_text(encoding="utf-8")
    assert whole.startswith(settingscache.MAGIC + "\x00") and len(whole.split("\x00")) == 1 + 10 + 1 + 4
    cut = whole[: whole.rindex("\x00MISSEDCALL_LANGUAGE")]
    for forged in (cut, whole + "\x00MISSEDCALL_FROM\x00evil@example.com", whole.replace("\x002\x00", "\x00x\x00")):
        cache.unlink()
        _write(cache, forged)
        assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "a@example.com", "MISSEDCALL_LANGUAGE": "ru"}


def test_awkward_values_come_back_from_the_cache_as_python_dotenv_read_them(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    text = (
        "MISSEDCALL_SMTP_PASSWORD='p=a|ss \"w\"'\nMISSEDCALL_SUBJECT_PREFIX=\"Пропущенный\\nзвонок\"\n"
        "MISSEDCALL_EMPTY=\nMISSEDCALL_JSONISH={\"key\": [1]}\n"
    )
    _write(conf, text)
    parsed = _cache_now(conf)
    assert os.path.exists(settingscache.cache_path(str(conf)))
    assert parsed["MISSEDCALL_SUBJECT_PREFIX"] == "Пропущенный\nзвонок" and parsed["MISSEDCALL_EMPTY"] == ""
    assert config.read_env_file(str(conf)) == parsed  # from the cache now


def test_a_setting_with_a_nul_is_not_cached(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\nMISSEDCALL_ODD=a\x00b\n")
    parsed = _cache_now(conf)
    assert parsed["MISSEDCALL_ODD"] == "a\x00b"
    assert not os.path.exists(settingscache.cache_path(str(conf)))
    assert config.read_env_file(str(conf)) == parsed


def test_a_fresh_file_is_not_cached(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_FROM=a@example.com\n")
    assert config.read_env_file(str(conf)) == {"MISSEDCALL_FROM": "a@example.com"}
    assert not os.path.exists(settingscache.cache_path(str(conf)))


def test_the_environment_still_wins_over_cached_values(tmp_path: Path) -> None:
    conf = tmp_path / "missedcall.env"
    _write(conf, "MISSEDCALL_DB_URL=sqlite:////tmp/x.sqlite3\nMISSEDCALL_LANGUAGE=ru\n")
    _cache_now(conf)
    settings = config.load_settings({"MISSEDCALL_CONFIG": str(conf), "MISSEDCALL_LANGUAGE": "en"})
    assert settings.language == "en" and settings.db.path == "/tmp/x.sqlite3"
