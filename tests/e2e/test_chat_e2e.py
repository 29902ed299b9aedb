"""Issue #14 end to end: a real abandon on a real Asterisk 22 reaches a Telegram chat through the hook.

A PBX of its own with missedcall put in by install.sh (as tests/e2e/test_scenarios.py
does); the Bot API is tests/support/chatserver.py on the host's 127.0.0.1 (the box
shares the host's network namespace, as it does for MariaDB), over HTTPS with the
suite's self-signed certificate, which the box trusts through MISSEDCALL_HTTP_CAFILE.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pbx as e2e
import pytest
from installed import Box, brief

from tests.support.chatserver import TOKEN, ChatServer
from tests.support.freepbx import make_freepbx_like, write_freepbx_conf
from tests.support.mariadb import MariaDBServer, temporary_mariadb

ASTERISK_ETC = Path(__file__).with_name("asterisk-etc")
QUEUES = (("600", "Sales"), ("601", "Sales overflow"), ("602", "Support"), ("603", "Billing"), ("604", "Support"))
CHAT = "-1007770001"
CA_IN_BOX = "/etc/missedcall/chat-ca.pem"


@pytest.fixture(scope="module")
def chat(tls_certificate: tuple[Path, Path]) -> Iterator[ChatServer]:
    server = ChatServer(*tls_certificate).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chatbox(pbx_chroot: Path, mariadb_server: MariaDBServer, tmp_path_factory: pytest.TempPathFactory,
            chat: ChatServer, tls_certificate: tuple[Path, Path]) -> Iterator[Box]:  # fmt: skip
    with temporary_mariadb(mariadb_server, prefix="mc_e2e_chat_") as db:
        make_freepbx_like(db, QUEUES)
        with e2e.Pbx(pbx_chroot, asterisk_etc=ASTERISK_ETC) as pbx:
            conf = write_freepbx_conf(tmp_path_factory.mktemp("freepbx") / "freepbx.conf", db)
            pbx.write_file("/etc/freepbx.conf", conf.read_bytes(), mode=0o640, owner="asterisk")
            box = Box(pbx, db, (("600", "sales@example.com", "Sales desk"),))
            box.install()
            pbx.write_file(CA_IN_BOX, tls_certificate[0].read_bytes(), mode=0o644)
            pbx.append_file(
                "/etc/missedcall/missedcall.env",
                f"\nMISSEDCALL_TELEGRAM_TOKEN={TOKEN}\nMISSEDCALL_TELEGRAM_API={chat.base}\n"
                f"MISSEDCALL_HTTP_CAFILE={CA_IN_BOX}\n",
            )
            box.admin("recipients", "add", "600", f"telegram:{CHAT}")
            yield box


def test_a_real_abandon_reaches_the_chat_and_the_mailbox(chatbox: Box, chat: ChatServer) -> None:
    call = chatbox.pbx.originate_local("600", caller_num="79161234567", caller_name="Ivan <b>Petrov</b>",
                                       hangup_after=3)  # fmt: skip
    callid = call.uniqueid()
    deadline = time.monotonic() + 40
    while not chat.telegram_texts(CHAT) and time.monotonic() < deadline:
        time.sleep(0.1)
    texts = chat.telegram_texts(CHAT)
    assert len(texts) == 1, f"no Telegram message for {callid}; rows {[brief(r) for r in chatbox.rows([callid])]}"
    assert "<code>Ivan &lt;b&gt;Petrov&lt;/b&gt; &lt;79161234567&gt;</code>" in texts[0]
    assert '<a href="tel:79161234567">79161234567</a>' in texts[0]
    copies = chatbox.wait_mails(callid, 1, call=call)
    assert [m["X-Original-To"] for m in copies] == ["sales@example.com"]
    chatbox.settle(call)
    (row,) = chatbox.rows([callid])
    assert row["status"] == "sent" and row["source"] == "agi", brief(row)
    assert f"telegram:{CHAT}" in row["recipients"] and TOKEN not in row["last_error"]
    listing = chatbox.admin("doctor")
    assert "chat targets: 1 target(s) answer" in listing, listing
