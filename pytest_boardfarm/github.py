"""GitHub Actions output: a Markdown job summary and ::error annotations."""

from __future__ import annotations

from .results import BoardResults, TestResult

SYMBOL = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️"}


def markdown_summary(boards: list[BoardResults]) -> str:
    lines = ["## Board farm results", ""]
    lines += ["| board | platform | firmware | passed | failed | errors | skipped | time |", "|---" * 8 + "|"]
    for b in boards:
        firmware = _cell(b.info.get("firmware", ""))
        lines.append(
            f"| {_cell(b.name)} | {_cell(b.info.get('platform', ''))} | {firmware} | {b.count('passed')} "
            f"| {b.count('failed')} | {b.count('error')} | {b.count('skipped')} | {b.duration:.1f}s |"
        )
    names = [b.name for b in boards]
    matrix: dict[tuple[str, str], dict[str, TestResult]] = {}
    for b in boards:
        for t in b.tests:
            matrix.setdefault((t.classname, t.row), {})[b.name] = t
    lines += ["", "### Tests × boards", "", "| test | " + " | ".join(map(_cell, names)) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for (classname, name), row in matrix.items():
        cells = [SYMBOL[row[n].outcome] if n in row else "" for n in names]
        lines.append(f"| `{classname}::{name}` | " + " | ".join(cells) + " |")
    problems = [t for b in boards for t in b.tests if t.outcome in ("failed", "error")]
    if problems:
        lines += ["", "### Failures", ""]
        for t in problems:
            lines.append(f"- **{_cell(t.name)}** on `{t.board}`: {_cell(t.summary)}")
    return "\n".join(lines) + "\n"


def failure_annotations(boards: list[BoardResults]) -> list[str]:
    """Workflow commands that mark each failure on its file and line."""
    out = []
    for b in boards:
        for t in b.tests:
            if t.outcome in ("failed", "error"):
                title = _escape_property(f"{t.name} on {t.board}: {t.summary}")
                out.append(f"::error file={_escape_property(t.path)},line={t.line},title={title}::{_escape(t.message)}")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")
