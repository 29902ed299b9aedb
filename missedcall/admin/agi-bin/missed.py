#!/usr/bin/env python3
"""missedcall AGI hook: AGI(missed.py,QUEUE[,REASON]) from the h extension or a hangup handler.

Deliberately thin: everything lives in the missedcall package. Whatever
happens, it exits 0 and prints nothing but AGI commands.
"""

import sys

try:
    from missedcall.detect.hook import main
except Exception:  # the package is missing or broken: never show Asterisk a traceback
    import syslog

    syslog.syslog(syslog.LOG_ERR, "missedcall: cannot import the missedcall package; is it installed?")
    sys.exit(0)

sys.exit(main(sys.argv[1:]))
