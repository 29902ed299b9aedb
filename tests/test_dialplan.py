"""missedcall.admin.dialplan: our [ext-queues] h block in extensions_override_freepbx.conf, and its exact revert."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from missedcall.admin import dialplan, dialplan_cli, installer
from tests.paths import INSTALL_FIXTURES
from tests.support.readme import config_defaults

FIXTURES = INSTALL_FIXTURES
GOSUB = "Gosub(macro-hangupcall,s,1())"
MACRO = "Macro(hangupcall,)"

BLOCK_17 = (
    "; BEGIN missedcall\n"
    "; Written by missedcall's install.sh: re-run it after a FreePBX upgrade; install.sh --uninstall removes it.\n"
    "[ext-queues]\n"
    'exten => h,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)\n'
    "exten => h,n,AGI(missed.py,${QUEUENUM})\n"
    "exten => h,n(done),Gosub(macro-hangupcall,s,1())\n"
    "; END missedcall\n"
)
HANDMADE = (FIXTURES / "extensions_override_freepbx.handmade.conf").read_text()


def test_block_is_design_section_4_with_the_generated_h_line() -> None:
    assert dialplan.render_block(GOSUB) == BLOCK_17
    assert dialplan.render_block(MACRO) == BLOCK_17.replace(GOSUB, MACRO)


@pytest.mark.parametrize(("version", "h_app"), [("freepbx16", MACRO), ("freepbx17", GOSUB)])
def test_generated_h_line_is_read_from_extensions_additional(version: str, h_app: str) -> None:
    path = FIXTURES / f"extensions_additional.{version}.conf"
    # [from-internal-additional] has an h line too: only [ext-queues]'s counts.
    assert dialplan_cli.generated_h_app(str(path)) == h_app


def test_no_ext_queues_h_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "extensions_additional.conf"
    path.write_text("[from-internal]\nexten => h,1,Macro(hangupcall,)\n")
    with pytest.raises(dialplan.DialplanError, match="no \\[ext-queues\\] h line"):
        dialplan_cli.generated_h_app(str(path))


@pytest.mark.parametrize("h_app", ["", "Macro(hangupcall,)\nexten => h,2,Hangup", "1234"])
def test_a_strange_h_line_is_refused(h_app: str) -> None:
    with pytest.raises(dialplan.DialplanError):
        dialplan.render_block(h_app)


@pytest.mark.parametrize(
    "original",
    [
        "",
        "; override\n",
        "; no final newline",
        "[from-internal-custom]\r\nexten => 1,1,Noop()\r\n",
        "[ext-queues]\nexten => 700,1,Noop(not h)\n",
        "; latin-1 \xe9 and a form feed \x0c inside a line\n",
    ],
)
def test_install_appends_the_block_and_uninstall_restores_bytes(original: str) -> None:
    installed = dialplan.install_text(original, GOSUB)
    assert installed.count("; BEGIN missedcall\n") + installed.count("; BEGIN missedcall\r\n") == 1
    assert installed.startswith(original)
    assert dialplan.install_text(installed, GOSUB) == installed  # idempotent
    assert dialplan.uninstall_text(installed) == original
    assert dialplan.block_h_app(installed) == GOSUB


def test_absent_file_is_created_and_removed_again() -> None:
    installed = dialplan.install_text(None, GOSUB)
    assert "; missedcall-note: created-file" in installed
    assert dialplan.uninstall_text(installed) is None


def test_reinstall_after_freepbx_upgrade_rewrites_the_last_line() -> None:
    on_16 = dialplan.install_text("; override\n", MACRO)
    on_17 = dialplan.install_text(on_16, GOSUB)
    assert on_17 == "; override\n" + BLOCK_17
    assert dialplan.block_h_app(on_17) == GOSUB


def test_block_in_the_middle_is_replaced_in_place_and_later_edits_survive_uninstall() -> None:
    installed = dialplan.install_text("; top\n", MACRO)
    edited = installed + "[later-admin-context]\nexten => s,1,Noop()\n"
    again = dialplan.install_text(edited, GOSUB)
    assert again == "; top\n" + BLOCK_17 + "[later-admin-context]\nexten => s,1,Noop()\n"
    assert dialplan.uninstall_text(again) == "; top\n[later-admin-context]\nexten => s,1,Noop()\n"


def test_handmade_h_is_refused_with_lines_and_way_out() -> None:
    with pytest.raises(dialplan.Refused) as caught:
        dialplan.install_text(HANDMADE, GOSUB)
    message = str(caught.value)
    assert "line 7-9" in message and "--force" in message and "exten => h,1" in message
    assert "\n" not in message
    # The article's users have their queue -> address rules in the script the hook runs: name it.
    assert message.endswith(
        "; its script /usr/local/bin/missed-call-mail.sh holds your queue -> address rules:"
        " import them with 'missedcall-admin import-script /usr/local/bin/missed-call-mail.sh'"
    )


@pytest.mark.parametrize(
    ("line", "scripts"),
    [
        ('exten => h,1,System(/var/lib/asterisk/bin/noanswer.sh ${UNIQUEID} "${CALLERID(num)}" ${NODEST} &)',
         ["/var/lib/asterisk/bin/noanswer.sh"]),
        ("exten => h,1,TrySystem('/opt/mail.sh' x)", ["/opt/mail.sh"]),
        ("exten => h,1,Macro(hangupcall,)", []),
        ("exten => h,1,System(echo hi)", []),  # no absolute path: nothing to name
    ],
)
def test_the_import_hint_names_the_hooks_script(line: str, scripts: list[str]) -> None:
    parsed = dialplan.parse(f"[ext-queues]\n{line}\n")
    assert dialplan.hook_scripts(parsed) == scripts


def test_force_comments_the_handmade_hook_out_and_uninstall_restores_it() -> None:
    installed = dialplan.install_text(HANDMADE, GOSUB, force=True)
    assert installed.endswith(BLOCK_17)
    assert ";missedcall; exten => h,1,GotoIf" in installed
    assert ";missedcall;  same => n,System(" in installed
    assert "exten => 700,1,Noop(kept: not an h line)\n" in installed  # not an h line: left active
    parsed = dialplan.parse(installed)
    assert parsed.foreign == [] and len(parsed.saved) == 1
    assert dialplan.install_text(installed, GOSUB, force=True) == installed
    assert dialplan.install_text(installed, GOSUB) == installed  # nothing foreign left: no --force needed
    assert dialplan.uninstall_text(installed) == HANDMADE


def test_handmade_hook_as_last_line_without_newline_round_trips() -> None:
    original = "[ext-queues]\nexten => h,1,Macro(hangupcall,)"
    installed = dialplan.install_text(original, MACRO, force=True)
    assert dialplan.uninstall_text(installed) == original


def test_commented_and_block_commented_h_lines_are_not_foreign() -> None:
    text = (
        "[ext-queues]\n"
        ";exten => h,1,Macro(hangupcall,)\n"
        ";--\n"
        "exten => h,1,Hangup()\n"
        "--;\n"
        ";--== end of [ext-queues] ==--;\n"
        "[other]\n"
        "exten => h,1,Hangup()\n"
    )
    assert dialplan.parse(text).foreign == []


@pytest.mark.parametrize(
    "broken",
    [
        "; BEGIN missedcall\n[ext-queues]\n",
        "; END missedcall\n",
        dialplan.render_block(GOSUB) * 2,
        "; BEGIN missedcall-saved\n;missedcall; x\n",
    ],
)
def test_damaged_markers_are_an_error_not_a_guess(broken: str) -> None:
    with pytest.raises(dialplan.DialplanError, match=r"fix by hand|remove one by hand"):
        dialplan.install_text(broken, GOSUB)
    with pytest.raises(dialplan.DialplanError):
        dialplan.uninstall_text(broken)


LINES = st.sampled_from(
    [
        "[ext-queues]",
        "[from-internal-custom]",
        "[ext-queues](+)",
        "exten => h,1,Macro(hangupcall,)",
        "exten=>h,n,Noop(${QUEUENUM})",
        " same => n,Hangup()",
        "exten => 600,1,Noop()",
        "; a comment",
        ";exten => h,1,commented",
        "",
        "   ",
        "include => other",
        "#include extensions_custom.conf",
        "\u00e9\u00e8 non-ascii",
        "exten => h , 1 , Hangup() ; trailing comment",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(LINES, max_size=14),
    eol=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    h_app=st.sampled_from([MACRO, GOSUB]),
)
def test_any_file_round_trips_byte_for_byte(lines: list[str], eol: str, final_newline: bool, h_app: str) -> None:
    original = eol.join(lines) + (eol if final_newline and lines else "")
    installed = dialplan.install_text(original, h_app, force=True)
    assert dialplan.parse(installed).foreign == []
    assert dialplan.block_h_app(installed) == h_app
    assert dialplan.install_text(installed, h_app, force=True) == installed
    assert dialplan.uninstall_text(installed) == original


def test_cli_install_backs_up_keeps_owner_and_mode_and_uninstall_restores(tmp_path: Path) -> None:
    override = tmp_path / "extensions_override_freepbx.conf"
    override.write_bytes(HANDMADE.encode())
    override.chmod(0o664)
    generated = FIXTURES / "extensions_additional.freepbx17.conf"
    backups = tmp_path / "backups"
    common = ["--file", str(override), "--backup-dir", str(backups)]
    assert dialplan.main(["install", *common, "--generated", str(generated)]) == 1  # refused
    assert override.read_text() == HANDMADE and not backups.exists()
    assert dialplan.main(["install", *common, "--generated", str(generated), "--force", "--dry-run"]) == 0
    assert override.read_text() == HANDMADE and not backups.exists()
    assert dialplan.main(["install", *common, "--generated", str(generated), "--force"]) == 0
    assert override.stat().st_mode & 0o777 == 0o664
    assert [p.read_text() for p in backups.iterdir()] == [HANDMADE]
    assert dialplan.main(["install", *common, "--generated", str(generated), "--force"]) == 0
    assert len(list(backups.iterdir())) == 1  # no change, no backup
    assert dialplan.main(["uninstall", *common]) == 0
    assert override.read_bytes() == HANDMADE.encode()
    assert len(list(backups.iterdir())) == 2


def test_snippet_for_plain_asterisk_uses_a_hangup_handler() -> None:
    snippet = dialplan.PLAIN_SNIPPET
    assert "hangup_handler_push" in snippet and "AGI(missed.py,${ARG1})" in snippet and "Return()" in snippet


def test_env_file_lists_every_documented_key_commented_with_its_default() -> None:
    """The keys and defaults come from the README's configuration table: the manual is checked too."""
    text = installer.render_env()
    documented = config_defaults()
    listed = dict(re.findall(r"^#(MISSEDCALL_[A-Z_]+)=(.*)$", text, flags=re.M))
    assert listed == documented
    for key in documented:
        assert re.search(rf"\n# \S[^\n]*\n#{key}=", text), f"{key} has no comment saying what it is"
    assert all(line.startswith("#") or not line for line in text.splitlines())


def test_state_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "install.state"
    path.write_text(installer.render_state({"prefix": "/opt/x", "dialplan": "plain"}))
    state = installer.read_state(str(path))
    assert state is not None and state["prefix"] == "/opt/x" and state["dialplan"] == "plain"
    assert state["agi_dir"] == "/var/lib/asterisk/agi-bin"
    assert installer.read_state(str(tmp_path / "absent")) is None
    with pytest.raises(ValueError):
        installer.render_state({"nonsense": "1"})


def test_source_hash_ignores_bytecode_and_sees_edits(tmp_path: Path) -> None:
    (tmp_path / "missedcall").mkdir()
    (tmp_path / "setup.cfg").write_text("[metadata]\n")
    module = tmp_path / "missedcall" / "a.py"
    module.write_text("x = 1\n")
    before = installer.source_hash(str(tmp_path))
    (tmp_path / "missedcall" / "__pycache__").mkdir()
    (tmp_path / "missedcall" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert installer.source_hash(str(tmp_path)) == before
    module.write_text("x = 2\n")
    assert installer.source_hash(str(tmp_path)) != before
    assert os.path.basename(installer.state_path("/etc/missedcall/missedcall.env")) == "install.state"


# ---------------------------------------------------------------------- the FastAGI service first (docs/fastagi.md)

SERVICE = "agi://127.0.0.1:4574/missed"


def test_service_block_calls_the_service_then_falls_back_to_the_hook() -> None:
    installed = dialplan.install_text("; override\n", GOSUB, service=SERVICE)
    block = installed[len("; override\n") :]
    lines = [line for line in block.splitlines() if line.startswith("exten")]
    assert lines == [
        'exten => h,1,GotoIf($["${ABANDONED}"!="TRUE"]?done)',
        "exten => h,n,AGI(agi://127.0.0.1:4574/missed,${QUEUENUM})",
        'exten => h,n,GotoIf($["${AGISTATUS}"!="FAILURE"]?done)',
        "exten => h,n,AGI(missed.py,${QUEUENUM})",
        f"exten => h,n(done),{GOSUB}",
    ]
    assert dialplan.block_service(installed) == SERVICE
    assert dialplan.block_h_app(installed) == GOSUB
    assert dialplan.install_text(installed, GOSUB, service=SERVICE) == installed  # idempotent
    # Switching back to the process hook (plain install.sh) and removing it give the bytes back.
    back = dialplan.install_text(installed, GOSUB)
    assert dialplan.block_service(back) is None and back == "; override\n" + BLOCK_17
    assert dialplan.uninstall_text(installed) == "; override\n"


@pytest.mark.parametrize(
    "url",
    ["agi://127.0.0.1:4574/other", "agi://h:1/missed,600", "agi://a b:1/missed", "agi://[::1]:4574/missed)\nexten"],
)
def test_service_address_must_be_ours(url: str) -> None:
    with pytest.raises(dialplan.DialplanError):
        dialplan.install_text("", GOSUB, service=url)


def test_cli_installs_the_service_block(tmp_path: Path) -> None:
    generated = tmp_path / "extensions_additional.conf"
    generated.write_text(f"[ext-queues]\nexten => h,1,{GOSUB}\n")
    override = tmp_path / "extensions_override_freepbx.conf"
    common = ["--file", str(override), "--generated", str(generated)]
    assert dialplan.main(["install", *common, "--service", "agi://[::1]:4574/missed"]) == 0
    assert dialplan.block_service(override.read_text()) == "agi://[::1]:4574/missed"
    assert dialplan.main(["install", *common]) == 0
    assert dialplan.block_service(override.read_text()) is None
