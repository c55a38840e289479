"""docs/providers.md's worked example is the file the test suite runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_guides_complete_example_is_examples_sticky_py() -> None:
    guide = (REPO / "docs" / "providers.md").read_text(encoding="utf-8")
    section = guide.split("## A complete example", 1)[1]
    listing = re.search(r"```python\n(.*?)```", section, re.S)
    assert listing is not None, "no python listing under 'A complete example'"
    assert listing.group(1) == (REPO / "examples" / "sticky.py").read_text(encoding="utf-8")
