"""Is the missedcall a bench measures the one install.sh makes (``pip install .``), or an editable one?

An editable install (``pip install -e``) runs a finder at every start-up that imports
pathlib and more: it doubles ``python3 -c pass`` and halves every ratio against it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def editable_reason(python: str) -> str:
    """Why ``python``'s missedcall is an editable install ("" when it is not)."""
    probe = (
        "import json, sys, glob, site, os\n"
        "finders = [type(f).__name__ + ' ' + str(getattr(f, '__module__', '')) for f in sys.meta_path]\n"
        "dirs = site.getsitepackages() + [site.getusersitepackages()]\n"
        "pths = [p for d in dirs for p in glob.glob(os.path.join(d, '*.pth'))]\n"
        "editable = [p for p in pths if '__editable__' in os.path.basename(p) and 'missedcall' in p]\n"
        "editable += [p for p in pths if 'missedcall' in os.path.basename(p)]\n"
        "import missedcall\n"
        "print(json.dumps({'finders': finders, 'pths': editable, 'file': missedcall.__file__}))\n"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    if out.returncode != 0:
        return f"missedcall is not importable by {python}: {out.stderr.strip().splitlines()[-1:]}"
    found = json.loads(out.stdout)
    if any("__editable__" in f for f in found["finders"]):
        return "an __editable__ finder is in sys.meta_path"
    if found["pths"]:
        return f"{found['pths'][0]} points into a source tree"
    if Path(found["file"]).resolve().is_relative_to(ROOT):
        return f"missedcall is imported from this repository ({found['file']})"
    return ""
