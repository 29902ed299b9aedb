"""missedcall.deliver.placeholders fills templates exactly as string.Template.safe_substitute does.

The templates' documented syntax is string.Template's; the module only avoids importing ``re`` on
the AGI's path. So every case here is the standard library's answer, on generated templates built
from the characters that matter ("$", braces, identifier characters, digits, Cyrillic, and the
two non-ASCII letters IGNORECASE would fold to ASCII: the Kelvin sign and the long s).
"""

from __future__ import annotations

from string import Template

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from missedcall.deliver.placeholders import substitute

NAMES = ("caller", "queue", "Caller", "_x", "a1", "caller_intl", "q")
PIECES = st.sampled_from(
    ["$", "$$", "{", "}", "${", "caller", "queue", "Caller", "_x", "a1", "1", " ", "ж", "\u212a", "\u017f", "_", "-",
     "\n", "caller_intl", "q", "Q"]
)
templates = st.lists(PIECES | st.text(max_size=3), max_size=30).map("".join)
values = st.dictionaries(st.sampled_from(NAMES), st.text(max_size=5) | st.integers().map(str), max_size=len(NAMES))


@settings(max_examples=3000, deadline=None)
@given(templates, values, values)
def test_generated_templates_fill_as_string_template_does(
    template: str, mapping: dict[str, str], other: dict[str, str]
) -> None:
    assert substitute(template, mapping) == Template(template).safe_substitute(mapping)
    # The second time the template's pieces come from the module's copy: other values, the same rule.
    assert substitute(template, other) == Template(template).safe_substitute(other)


@pytest.mark.parametrize(
    "template",
    [
        "", "$", "$$", "$$$", "$caller", "${caller}", "${caller", "$ {caller}", "${}", "${1}", "$1caller",
        "$callerX", "${caller}X", "$caller$queue", "$$caller", "$$$caller", "${ caller}", "${caller }",
        "$\u212aelvin", "$\u017fong", "${\u212a}", "x$", "price: 5$", "$_x-$a1.", "${caller}}", "{$caller}",
        "Пропущенный звонок от $caller в очередь ${queue}", "$unknown ${unknown} $$unknown",
    ],
)
def test_edge_cases_fill_as_string_template_does(template: str) -> None:
    mapping = {"caller": "79161234567", "queue": "600", "_x": "u", "a1": "v", "Caller": "C"}
    assert substitute(template, mapping) == Template(template).safe_substitute(mapping)


def test_values_are_not_scanned_again() -> None:
    """A caller name holding "$queue" is text, not a placeholder, as with string.Template."""
    filled = substitute("$caller / $queue", {"caller": "$queue ${queue} $$", "queue": "600"})
    assert filled == "$queue ${queue} $$ / 600"


def test_many_templates_in_turn_keep_filling_right() -> None:
    """Past the number of templates the module keeps cut up, each is still filled as string.Template does."""
    mapping = {"caller": "79161234567", "queue": "600"}
    for round_ in range(2):
        for number in range(200):
            template = f"{number} $caller ${{queue}} $$ $nope {round_}"
            assert substitute(template, mapping) == Template(template).safe_substitute(mapping)
