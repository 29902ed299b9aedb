#!/usr/bin/env python3
"""missedcall AGI hook: AGI(missed.py,QUEUE[,REASON]) from the h extension or a hangup handler.

Deliberately thin: everything lives in the missedcall package. Whatever
happens, it exits 0 and prints nothing but AGI commands.
"""

import sys

if sys.flags.no_site:
    # install.sh starts this with `python -IS`: no site, no .pth files, no sitecustomize look-ups, which
    # cost every hang-up a sizeable part of Python's start-up. A virtualenv's packages are then ours to add;
    # any other interpreter gets its site after all.
    import os

    packages = os.path.join(sys.executable.rsplit("/", 2)[0], "lib", f"python{sys.version_info[0]}."
                            f"{sys.version_info[1]}", "site-packages")  # fmt: skip
    if os.path.isfile(os.path.join(sys.executable.rsplit("/", 2)[0], "pyvenv.cfg")) and os.path.isdir(packages):
        sys.path.append(packages)
    else:
        import site

        site.main()

try:
    from missedcall.detect import hook
except Exception:  # the package is missing or broken: never show Asterisk a traceback
    import syslog

    syslog.syslog(syslog.LOG_ERR, "missedcall: cannot import the missedcall package; is it installed?")
    sys.exit(0)

# run(): main(), then os._exit, without the interpreter's teardown; a package older than run() has main() only.
sys.exit(hook.run(sys.argv[1:]) if hasattr(hook, "run") else hook.main(sys.argv[1:]))
