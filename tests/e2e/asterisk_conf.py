"""The Asterisk configuration every e2e PBX writes before the test's own
(asterisk_etc): directories, a minimal module list that opens no port, the
queue_log, and the [callers] harness context that places calls with any caller ID."""

from __future__ import annotations

# The Asterisk configuration every Pbx writes before anything from asterisk_etc.
HARNESS_DIR = "/var/lib/asterisk/e2e-calls"

ASTERISK_CONF = """\
; written by tests/e2e/pbx.py
; no "(!)" here: the sample's "[directories](!)" is a template that Asterisk ignores
[directories]
astcachedir => /var/cache/asterisk
astetcdir => /etc/asterisk
astmoddir => {moddir}
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
; FreePBX's location (install.sh's default), not Debian's /usr/share/asterisk/agi-bin
astagidir => /var/lib/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /var/run/asterisk
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin

[options]
runuser = asterisk
rungroup = asterisk
documentation_language = en_US
; keep the startup fast and the box quiet: no AMI/HTTP/SIP is loaded at all
"""

# autoload=no: only what the product touches, nothing that opens a port (no SIP,
# IAX, AMI, HTTP), so runs never clash with each other or with the host.
MODULES_CONF = """\
; written by tests/e2e/pbx.py
[modules]
autoload = no
load => pbx_config.so          ; extensions.conf
load => res_clioriginate.so    ; "channel originate" on the CLI
load => app_queue.so           ; Queue(), QueueLog(), queue_log
load => app_stack.so           ; Gosub/Return (FreePBX 17 has no Macro)
load => res_speech.so          ; res_agi fails to load without it (ast_speech_change)
load => res_agi.so             ; AGI()
load => app_exec.so            ; ExecIf, TryExec
load => app_verbose.so         ; Verbose, Log
load => app_dial.so
load => app_system.so
load => func_callerid.so       ; CALLERID()
load => func_channel.so        ; CHANNEL(linkedid), hangup_handler_push
load => func_env.so            ; FILE(), STAT(): the callers context reads caller IDs
load => func_logic.so          ; IF(), EXISTS()
load => func_strings.so        ; LEN(), REGEX(), ...
load => func_db.so             ; DB()
load => func_cut.so
load => func_math.so
load => func_timeout.so
load => func_global.so
load => func_hangupcause.so
load => func_uri.so
load => func_cdr.so            ; CDR() reads in FreePBX's macros; CDR itself is off
load => bridge_simple.so       ; an answered queue call is bridged
load => bridge_builtin_features.so
load => bridge_holding.so
load => codec_ulaw.so
load => codec_alaw.so
load => codec_gsm.so
"""

LOGGER_CONF = """\
; written by tests/e2e/pbx.py
[general]
queue_log = yes
queue_log_to_file = yes
queue_log_name = queue_log
dateformat = %F %T.%3q

[logfiles]
; verbose(4): dialplan execution ("-- Executing ...") is level 3
full => verbose(4),notice,warning,error,dtmf
messages => notice,warning,error
"""

CDR_CONF = """\
; written by tests/e2e/pbx.py
[general]
enable = no
"""

# Calls placed by Pbx.originate_local(): Local/<token>@callers.  The ;2 half lands
# here; caller ID and destination come from files the test wrote, so any byte
# string (commas, quotes, newlines, Cyrillic) reaches CALLERID() unmangled.
# FILE(..)= writes the UNIQUEID back so the test can find the call in queue_log.
HARNESS_EXTENSIONS = f"""\
; written by tests/e2e/pbx.py: the test harness, not part of FreePBX
[callers]
exten => _X.,1,Set(E2E={HARNESS_DIR}/${{EXTEN}})
 same => n,Set(FILE(${{E2E}}.uniqueid)=${{UNIQUEID}})
 same => n,GotoIf($[${{STAT(e,${{E2E}}.did)}}]?:nodid)
 same => n,Set(__FROM_DID=${{FILE(${{E2E}}.did)}})
 same => n(nodid),GotoIf($[${{STAT(e,${{E2E}}.num)}}]?:nonum)
 same => n,Set(CALLERID(num)=${{FILE(${{E2E}}.num)}})
 same => n(nonum),GotoIf($[${{STAT(e,${{E2E}}.name)}}]?:noname)
 same => n,Set(CALLERID(name)=${{FILE(${{E2E}}.name)}})
 same => n(noname),Goto(${{FILE(${{E2E}}.context)}},${{FILE(${{E2E}}.exten)}},1)
"""

DEFAULT_EXTENSIONS = """\
; written by tests/e2e/pbx.py (no asterisk_etc given)
[general]
static = yes
writeprotect = yes

#include extensions_harness.conf
#include extensions_custom.conf
"""
