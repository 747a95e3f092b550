"""The README's "Writing a backend" example, taken from the README itself, so that the tests
of every surface run exactly the code a reader copies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first Python block of the README's "Writing a backend" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Writing a backend\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "README: no example under 'Writing a backend'"
    return found.group(1)


def keyword_backend_class() -> type[Any]:
    """``KeywordBackend`` as the README defines it."""
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    return namespace["KeywordBackend"]


def keyword_backend() -> Any:
    return keyword_backend_class()()
