"""pytest-html, when installed: a Board column in its results table, the farm in its environment table.

Registered only where pytest-html is active (and only in the process that writes
its report); pytest-html's own hooks, nothing of its internals.
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from .inventory import Farm
from .results import BOARD_PROPERTY, ResultsCollector

ENVIRONMENT_KEY = "Board farm"


def wanted(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("html") and not hasattr(config, "workerinput")


def _board(report: pytest.TestReport) -> str:
    for name, value in getattr(report, "user_properties", ()):
        if name == BOARD_PROPERTY:
            return str(value)
    return ""


class HtmlReport:
    """pytest-html's hooks; the farm's facts from farm.yaml, then what the boards told."""

    def __init__(self, config: pytest.Config, farm: Farm, inventory: str, results: ResultsCollector) -> None:
        self.config = config
        self.farm = farm
        self.inventory = inventory
        self.results = results

    def _environment(self) -> dict[str, str]:
        out = {"inventory": self.inventory}
        for spec in self.farm.boards:
            facts = {**self.results.known.get(spec.name, {}), **self.results.info.get(spec.name, {})}
            described = [facts.get("platform") or spec.platform or "?"]
            if facts.get("firmware"):
                described.append(facts["firmware"])
            if facts.get("image"):
                described.append(f"image {facts['image']}")
            if facts.get("health"):
                described.append(f"health: {facts['health']}")
            out[spec.name] = ", ".join(described)
        return out

    def _metadata(self) -> dict[str, Any] | None:
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:  # pragma: no cover - pytest-html requires pytest-metadata
            return None
        return self.config.stash.get(metadata_key, None)

    @pytest.hookimpl(tryfirst=True)  # before pytest-html reads the environment (trylast)
    def pytest_sessionstart(self) -> None:
        metadata = self._metadata()
        if metadata is not None:
            metadata[ENVIRONMENT_KEY] = self._environment()

    @pytest.hookimpl(tryfirst=True)  # before pytest-html writes its report: now with the firmware the boards told
    def pytest_sessionfinish(self) -> None:
        metadata = self._metadata()
        if metadata is not None:
            metadata[ENVIRONMENT_KEY] = self._environment()

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="sortable" data-column-type="board">Board</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        cells.insert(2, f'<td class="col-board">{html.escape(_board(report))}</td>')
