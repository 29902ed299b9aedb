#!/usr/bin/env python3
"""missedcall AGI hook: AGI(missed.py,QUEUE[,REASON]) from the h extension or a hangup handler.

Deliberately thin: everything lives in the missedcall package. Whatever
happens, it exits 0 and prints nothing but AGI commands.
"""

import sys

try:
    from missedcall.detect import hook
except Exception:  # the package is missing or broken: never show Asterisk a traceback
    import syslog

    syslog.syslog(syslog.LOG_ERR, "missedcall: cannot import the missedcall package; is it installed?")
    sys.exit(0)

# run(): main(), then os._exit, without the interpreter's teardown; a package older than run() has main() only.
sys.exit(hook.run(sys.argv[1:]) if hasattr(hook, "run") else hook.main(sys.argv[1:]))
