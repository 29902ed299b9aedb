"""The README's tables, read the way a user reads them: tests check the code against the manual.

Only the tables' first column and, for keys, the default and example columns are read; a row's names are
its backticked words, and ``_PORT`` after ``MISSEDCALL_SMTP_HOST`` means
``MISSEDCALL_SMTP_PORT``, as the table writes it.
"""

from __future__ import annotations

import re

from tests.paths import REPO_ROOT

README = REPO_ROOT / "README.md"


def table_rows(header: str) -> list[list[str]]:
    """The cells of each row of the table whose header line is ``header`` (e.g. ``| key | meaning | default |``)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(header) + 2  # the header and its |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    names = re.findall(r"`([^`]+)`", cell)
    full: list[str] = []
    for name in names:
        if name.startswith("_") and full:
            name = full[0].rsplit("_", 1)[0] + name
        full.append(name)
    return full


def _default(text: str) -> str:
    # One backticked literal is the value itself; words ("none", "bundled", "the system's", a
    # computed `asterisk@<fqdn>`) mean the key is left empty and the product works it out.
    literal = re.fullmatch(r"`([^`<>]*)`", text.strip())
    return literal.group(1) if literal else ""


CONFIG_TABLE = "| key | meaning | default | example |"


def _per_key(column: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for row in table_rows(CONFIG_TABLE):
        keys = _names(row[0])
        cells = row[column].split(", ") if len(keys) > 1 else [row[column]]
        assert len(cells) == len(keys), f"README: one value per key in {row[0]}, column {column + 1}"
        found.update(zip(keys, cells))
    return found


def config_defaults() -> dict[str, str]:
    """Every key of the README's configuration table with the value its empty-looking default stands for."""
    return {key: _default(cell) for key, cell in _per_key(2).items()}


def config_examples() -> dict[str, str]:
    """Every key of the README's configuration table with its example value ('' when the row has none)."""
    return {key: _default(cell) for key, cell in _per_key(3).items()}


def template_placeholders() -> list[str]:
    """The names (without ``$``) the README's placeholder table documents."""
    return [name.lstrip("$") for cell, _value in table_rows("| placeholder | value |") for name in _names(cell)]
