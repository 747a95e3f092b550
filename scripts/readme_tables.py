"""The README's tables of backends, setting scopes and the HTTP error policy, generated.

    python scripts/readme_tables.py          # rewrite them in README.md
    python scripts/readme_tables.py --check  # exit 1 if README.md is out of date

Each table sits between ``<!-- readme_tables: NAME -->`` and ``<!-- /readme_tables -->`` and
is rendered from the tables the code reads (``memreranker.backend_table`` and
``memreranker.http.error_policy``), so the docs cannot drift from the behaviour:
``tests/test_readme_tables.py`` runs the check.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from memreranker.backend_table import (
    BUILTIN,
    BUILTIN_BACKENDS,
    HOSTED,
    LOCAL,
    SCOPE_NOTES,
    SERVED,
    SETTING_SCOPES,
)
from memreranker.http.error_policy import BY_CODE, BY_STATUS, BY_TYPE, UNLISTED, Rule
from memreranker.http.protocol import endpoint_url
from memreranker.settings import RerankerSettings

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(
    r"(<!-- readme_tables: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /readme_tables -->)",
    re.DOTALL,
)
_EXAMPLE_ROOT = "http://host"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(text: str | int | None) -> str:
    return "-" if text is None else f"`{text}`"


def backends() -> str:
    rows = []
    for spec in BUILTIN_BACKENDS.values():
        if spec.dialect is None:
            wire, url, key = "local weights (torch)", "-", "-"
        else:
            path = endpoint_url(spec.dialect, _EXAMPLE_ROOT).removeprefix(_EXAMPLE_ROOT)
            wire = f"{spec.dialect}: `POST {{base_url}}{path}`"
            if spec.default_base_url is not None:
                url = f"`${spec.base_url_env}` or `{spec.default_base_url}`"
            else:
                url = f"required, e.g. `{spec.example_base_url}`"
            if spec.api_key_env is not None:
                need = "required" if spec.needs_api_key else "optional"
                key = f"`${spec.api_key_env}` ({need})"
            else:
                key = "optional (`Authorization: Bearer`)"
        model = _code(spec.default_model) if spec.default_model else "the server's"
        if spec.known_models:
            model += " (documented: " + ", ".join(map(_code, spec.known_models)) + ")"
        rows.append(
            [
                f"`{spec.name}`",
                model,
                wire,
                _code(spec.default_prompt_format),
                _code(spec.max_documents_per_request),
                url,
                key,
            ]
        )
    return _table(
        [
            "backend",
            "default model",
            "wire format",
            "`prompt_format` default",
            "documents per request",
            "`base_url`",
            "API key",
        ],
        rows,
    )


def _scope_label(scope: frozenset[str]) -> str:
    names = ", ".join(f"`{n}`" for n in BUILTIN_BACKENDS if n in scope)
    if scope == LOCAL:
        return "local weights only"
    if scope == HOSTED:
        return f"the hosted backends ({names})"
    if scope == SERVED:
        return f"servers that score what they are sent ({names})"
    if scope == BUILTIN:
        return "every built-in backend, not a `Backend` instance"
    return names


def setting_scopes() -> str:
    groups: dict[frozenset[str], list[str]] = {}
    for setting, scope in SETTING_SCOPES.items():
        groups.setdefault(scope, []).append(setting)
    everywhere = [
        name
        for name in RerankerSettings.model_fields
        if name not in SETTING_SCOPES and name != "backend"
    ]
    rows = []
    for scope, names in groups.items():
        notes = [f"`{n}`: {SCOPE_NOTES[n]}" for n in names if n in SCOPE_NOTES]
        rows.append([_scope_label(scope), ", ".join(f"`{n}`" for n in names), "; ".join(notes)])
    rows.append(
        [
            "every backend, a `Backend` instance included",
            ", ".join(f"`{n}`" for n in everywhere),
            "",
        ]
    )
    return _table(["applies to", "settings", "why"], rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _policy_row(what: str, rule: Rule) -> list[str]:
    return [what, f"`{rule.error.__name__}`", _yes(rule.retried), _yes(rule.counts)]


def error_policy() -> str:
    rows = [_policy_row(f"HTTP {status}", rule) for status, rule in BY_STATUS.items()]
    rows += [_policy_row(f"MemOS code {code}", rule) for code, rule in BY_CODE.items()]
    rows.append(_policy_row("any other status or code", UNLISTED))
    labels: dict[str, str] = {
        "ServiceConnectionError": "connection refused or reset",
        "RerankTimeoutError": "timeout",
        "InvalidResponseError": "a success reply that fails validation",
        "CircuitOpenError": "the circuit is open (no request sent)",
    }
    rows += [_policy_row(labels[kind.__name__], rule) for kind, rule in BY_TYPE.items()]
    return _table(["reply", "error", "retried", "counts against the circuit"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "backends": backends,
    "setting_scopes": setting_scopes,
    "error_policy": error_policy,
}


def render(text: str) -> str:
    """``text`` with every generated block rendered afresh (unknown names are an error)."""
    seen: set[str] = set()

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"README block {name!r} is not one of {', '.join(TABLES)}")
        seen.add(name)
        return match.group(1) + TABLES[name]() + match.group(4)

    rendered = BLOCK.sub(block, text)
    missing = TABLES.keys() - seen
    if missing:
        raise ValueError(f"README.md lacks the block(s) {', '.join(sorted(missing))}")
    return rendered


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    rendered = render(text)
    if "--check" in argv:
        if rendered != text:
            sys.stderr.write(
                "README.md's generated tables are out of date: "
                "run python scripts/readme_tables.py\n"
            )
            return 1
        return 0
    if rendered != text:
        README.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
