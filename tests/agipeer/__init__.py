"""A scripted Asterisk 22 AGI peer, for tests that run an AGI script for real.

The peer starts the script as a subprocess with pipes, writes the header block
exactly as Asterisk 22 does, then answers every command line the way
``res_agi.c`` answers it: same argument parsing, same dead-channel refusals,
same raw ``(value)`` replies, so a newline in a caller name spans two reply
lines just as in the recorded sessions under ``tests/fixtures/asterisk22-agi``.

protocol    header blocks and command-line parsing, the fixed replies, Asterisk's script environment
commands    res_agi's command table and the channel a session emulates (variables, functions, AstDB)
peer        AgiPeer (runs the script, bounded by a timeout) and AgiRun (what happened)
network     the same peer over TCP, as Asterisk speaks FastAGI (the HANGUP line, the channel held)
recordings  what a recorded session reveals (the channel variables it read)

Stdlib only (and missedcall's split_lines). Import from here: ``from tests.agipeer import AgiPeer``.
"""

from __future__ import annotations

from tests.agipeer.peer import AgiPeer, AgiRun
from tests.agipeer.protocol import (
    ASTERISK_VERSION,
    REPLY_DEAD,
    REPLY_UNKNOWN,
    header_args,
    make_headers,
    parse_agi_args,
    parse_header_block,
)
from tests.agipeer.recordings import variables_from_exchanges

__all__ = [
    "ASTERISK_VERSION",
    "REPLY_DEAD",
    "REPLY_UNKNOWN",
    "AgiPeer",
    "AgiRun",
    "header_args",
    "make_headers",
    "parse_agi_args",
    "parse_header_block",
    "variables_from_exchanges",
]
