"""Read FreePBX's own configuration files, without executing any PHP.

FreePBX keeps its database credentials in ``/etc/freepbx.conf`` as PHP
assignments (``$amp_conf['AMPDBUSER'] = 'freepbxuser';``) and, on older boxes,
in ``/etc/amportal.conf`` as ``KEY=value`` lines. Both parsers are pure: they
take text and return a dict, so they are tested on every variant without files.
"""

from __future__ import annotations

import re

# $amp_conf['KEY'] = 'value';   or   $amp_conf["KEY"] = "value";
# A pattern, compiled (and cached by re) on first use: the AGI imports this module on every call.
_PHP_ASSIGN = (
    r"""\$amp_conf\s*\[\s*(['"])(?P<key>[A-Za-z0-9_]+)\1\s*\]\s*=\s*"""
    r"""(?:'(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dq>(?:[^"\\]|\\.)*)"|(?P<bare>[0-9]+))\s*;"""
)
_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$", "v": "\v", "f": "\f", "e": "\x1b"}


def _unescape_single(text: str) -> str:
    # PHP single quotes know only two escapes: \' and \\.
    return re.sub(r"\\([\\'])", r"\1", text)


def _unescape_double(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _DQ_ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def _strip_php_comments(text: str) -> str:
    # Block comments can hide a whole old credential set; line comments a single line.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("//", "#")))


def parse_freepbx_conf(text: str) -> dict[str, str]:
    """Return the ``$amp_conf`` assignments of a freepbx.conf; the last one wins, as in PHP."""
    conf: dict[str, str] = {}
    for match in re.finditer(_PHP_ASSIGN, _strip_php_comments(text)):
        if match.group("sq") is not None:
            value = _unescape_single(match.group("sq"))
        elif match.group("dq") is not None:
            value = _unescape_double(match.group("dq"))
        else:
            value = match.group("bare")
        conf[match.group("key")] = value
    return conf


def parse_amportal_conf(text: str) -> dict[str, str]:
    """Return the ``KEY=value`` lines of an amportal.conf (shell-style, optional quotes)."""
    conf: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if re.fullmatch(r"[A-Za-z0-9_]+", key):
            conf[key] = value
    return conf


def parse_amp_conf(text: str) -> dict[str, str]:
    """Parse either format: PHP assignments when present, else ``KEY=value`` lines."""
    if "$amp_conf" in text:
        return parse_freepbx_conf(text)
    return parse_amportal_conf(text)


def ext_queues_h_line(extensions_additional: str) -> str | None:
    """The application that the generated ``[ext-queues]`` ``h`` extension calls.

    FreePBX 13-16 writes ``Macro(hangupcall,)``, 17 writes
    ``Gosub(macro-hangupcall,s,1())``; our override must repeat it exactly.
    """
    in_context = False
    for raw in extensions_additional.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("[") and "]" in line:
            in_context = line[1 : line.index("]")].strip() == "ext-queues"
            continue
        if not in_context:
            continue
        match = re.match(r"exten\s*=>?\s*h\s*,\s*(?:1|n)\s*,\s*(.+)$", line)
        if match:
            return match.group(1).strip()
    return None
