"""FreePBX configuration parsing: every variant seen on FreePBX 13-17 boxes, and then some."""

from __future__ import annotations

import pytest

from missedcall import freepbx
from missedcall.config import ConfigError, load_settings
from missedcall.dburl import DbUrlError, parse_db_url, target_from_amp_conf

FREEPBX_CONF = """<?php
$amp_conf['AMPDBUSER'] = 'freepbxuser';
$amp_conf['AMPDBPASS'] = 'p@ss\\'word$1';
$amp_conf['AMPDBHOST'] = 'localhost';
$amp_conf['AMPDBNAME'] = 'asterisk';
$amp_conf['AMPDBENGINE'] = 'mysql';
$amp_conf['datasource'] = ''; //for sqlite3

require_once('/var/www/html/admin/bootstrap.php');
?>
"""


def test_single_quotes_with_escapes() -> None:
    conf = freepbx.parse_freepbx_conf(FREEPBX_CONF)
    assert conf["AMPDBUSER"] == "freepbxuser"
    assert conf["AMPDBPASS"] == "p@ss'word$1"
    assert conf["AMPDBNAME"] == "asterisk"
    assert conf["datasource"] == ""


def test_double_quotes_spacing_port_and_socket() -> None:
    text = (
        '<?php\n$amp_conf["AMPDBUSER"]="fpbx";\n  $amp_conf[ "AMPDBPASS" ] = "a\\"b\\\\c\\$d" ;\n'
        "$amp_conf['AMPDBPORT'] = 3307;\n$amp_conf['AMPDBSOCK'] = '/tmp/my.sock';\n"
    )
    conf = freepbx.parse_freepbx_conf(text)
    assert conf == {"AMPDBUSER": "fpbx", "AMPDBPASS": 'a"b\\c$d', "AMPDBPORT": "3307", "AMPDBSOCK": "/tmp/my.sock"}
    target = target_from_amp_conf(conf, "/etc/freepbx.conf")
    assert target.unix_socket == "/tmp/my.sock"
    assert target.port == 3307
    assert target.database == "asterisk"  # AMPDBNAME absent: FreePBX's default


def test_commented_lines_are_ignored_and_last_assignment_wins() -> None:
    text = (
        "<?php\n// $amp_conf['AMPDBPASS'] = 'old';\n# $amp_conf['AMPDBUSER'] = 'olduser';\n"
        "/* $amp_conf['AMPDBHOST'] = 'gone';\n*/\n$amp_conf['AMPDBUSER'] = 'u1';\n$amp_conf['AMPDBUSER'] = 'u2';\n"
    )
    assert freepbx.parse_freepbx_conf(text) == {"AMPDBUSER": "u2"}


def test_amportal_conf_format() -> None:
    text = "# FreePBX\nAMPDBUSER=asteriskuser\nAMPDBPASS='secret pw'\nAMPDBHOST=db.local\nAMPDBPORT=3306\nbogus line\n"
    conf = freepbx.parse_amp_conf(text)
    assert conf["AMPDBUSER"] == "asteriskuser"
    assert conf["AMPDBPASS"] == "secret pw"
    target = target_from_amp_conf(conf, "/etc/amportal.conf")
    assert (target.host, target.port, target.unix_socket) == ("db.local", 3306, "")


def test_php_is_never_executed() -> None:
    evil = "<?php system('touch /tmp/pwned'); $amp_conf['AMPDBUSER'] = 'x'.shell_exec('id');\n"
    assert freepbx.parse_freepbx_conf(evil) == {}


def test_password_is_not_in_repr_or_describe() -> None:
    target = target_from_amp_conf({"AMPDBUSER": "u", "AMPDBPASS": "TopSecret"}, "f")
    assert "TopSecret" not in repr(target)
    assert "TopSecret" not in target.describe()


@pytest.mark.parametrize(
    ("url", "kind", "fields"),
    [
        ("sqlite:////var/lib/x.sqlite3", "sqlite", {"path": "/var/lib/x.sqlite3"}),
        (
            "mysql://u:p%40ss@127.0.0.1:3307/db",
            "mysql",
            {"user": "u", "password": "p@ss", "port": 3307, "host": "127.0.0.1"},
        ),
        ("mysql://u:p@localhost/db?unix_socket=/run/x.sock", "mysql", {"unix_socket": "/run/x.sock", "database": "db"}),
    ],
)
def test_db_urls(url: str, kind: str, fields: dict[str, object]) -> None:
    target = parse_db_url(url)
    assert target.kind == kind
    for key, value in fields.items():
        assert getattr(target, key) == value


@pytest.mark.parametrize("url", ["postgres://u@h/db", "mysql://u@h/", "sqlite:relative.db", "mysql://u@h:99999/db"])
def test_bad_db_urls(url: str) -> None:
    with pytest.raises(DbUrlError):
        parse_db_url(url)


def test_settings_read_freepbx_conf_then_amportal(tmp_path) -> None:
    conf = tmp_path / "freepbx.conf"
    conf.write_text(FREEPBX_CONF)
    settings = load_settings({"MISSEDCALL_CONFIG": str(tmp_path / "none.env"), "MISSEDCALL_FREEPBX_CONF": str(conf)})
    assert settings.is_freepbx
    assert settings.db.kind == "mysql" and settings.db.user == "freepbxuser"


def test_settings_default_to_sqlite_without_freepbx(tmp_path) -> None:
    settings = load_settings(
        {"MISSEDCALL_CONFIG": str(tmp_path / "none.env"), "MISSEDCALL_FREEPBX_CONF": str(tmp_path / "absent.conf")}
    )
    assert not settings.is_freepbx
    assert settings.db.kind == "sqlite" and settings.db.path == "/var/lib/missedcall/missedcall.sqlite3"


def test_env_file_and_environment_precedence(tmp_path) -> None:
    env_file = tmp_path / "mc.env"
    env_file.write_text(
        "MISSEDCALL_LANGUAGE=ru\nMISSEDCALL_MIN_WAIT=5\nMISSEDCALL_SMTP_PASSWORD='pa$$word'\n"
        "MISSEDCALL_FALLBACK_TO=a@example.com, B@example.com ,a@example.com\n"
    )
    settings = load_settings({"MISSEDCALL_CONFIG": str(env_file), "MISSEDCALL_MIN_WAIT": "9"})
    assert settings.language == "ru"
    assert settings.min_wait == 9  # the real environment wins over the file
    assert settings.smtp_password == "pa$$word"  # no interpolation of "$"
    assert settings.fallback_to == ("a@example.com", "B@example.com")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("MISSEDCALL_MIN_WAIT", "soon", "whole number"),
        ("MISSEDCALL_TRANSPORT", "pigeon", "one of"),
        ("MISSEDCALL_FALLBACK_TO", '"boss@example.com" <evil@example.com>', "plain e-mail"),
        ("MISSEDCALL_REASONS", "ABANDON,NAPTIME", "unknown reason"),
        ("MISSEDCALL_DB_URL", "oracle://x", "must start with"),
        ("MISSEDCALL_TEMPLATE_DIR", "../../etc", "absolute"),
        ("MISSEDCALL_FROM", "a@b\nBcc: evil@example.com", "control character"),
    ],
)
def test_bad_settings_give_one_line_naming_the_key(tmp_path, key: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MISSEDCALL_CONFIG": str(tmp_path / "none.env"), key: value})
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert key.split("_", 1)[1] in message or key in message or "control" in message


def test_ext_queues_h_line_per_freepbx_version() -> None:
    fpbx16 = (
        "[ext-queues]\nexten => 600,1,Macro(user-callerid,)\nexten => h,1,Macro(hangupcall,)\n"
        "\n[other]\nexten => h,1,Hangup\n"
    )
    fpbx17 = "[from-internal]\nexten => h,1,Hangup()\n[ext-queues]\nexten => h,1,Gosub(macro-hangupcall,s,1()) ; end\n"
    assert freepbx.ext_queues_h_line(fpbx16) == "Macro(hangupcall,)"
    assert freepbx.ext_queues_h_line(fpbx17) == "Gosub(macro-hangupcall,s,1())"
    assert freepbx.ext_queues_h_line("[ext-queues]\nexten => 600,1,Noop\n") is None
