"""The README's tables of backends, setting scopes and error policy are the code's tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def readme_tables():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(SCRIPTS))
    try:
        import readme_tables

        yield readme_tables
    finally:
        sys.path.remove(str(SCRIPTS))


def test_the_readme_tables_are_up_to_date(readme_tables) -> None:  # type: ignore[no-untyped-def]
    text = readme_tables.README.read_text(encoding="utf-8")
    assert readme_tables.render(text) == text, (
        "README.md's generated tables are out of date: run python scripts/readme_tables.py"
    )


def test_a_changed_row_shows_in_the_rendered_tables(readme_tables) -> None:  # type: ignore[no-untyped-def]
    from memreranker.http import error_policy

    rendered = readme_tables.error_policy()
    assert "| MemOS code 40304 | `RateLimitError` | no | yes |" in rendered
    assert "| HTTP 429 | `RateLimitError` | yes | yes |" in rendered
    assert len(rendered.splitlines()) == 2 + len(error_policy.BY_STATUS) + len(
        error_policy.BY_CODE
    ) + 1 + len(error_policy.BY_TYPE)
    backends = readme_tables.backends()
    assert "| `tei` | the server's | tei: `POST {base_url}/rerank` | `plain` | `32` |" in backends
    scopes = readme_tables.setting_scopes()
    assert "| local weights only | `device`, `dtype`," in scopes


def test_a_readme_without_a_block_is_refused(readme_tables) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="lacks the block"):
        readme_tables.render("no tables here\n")
