"""The README's demo, as scripts/demo runs it, so CI keeps the README's promise."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_suite_on_the_example_farm(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "examples/demo", "--farm", "farm.example.yaml", "-n", "auto",
            "--farm-junit", str(tmp_path / "junit.xml"), "--farm-log-dir", str(tmp_path / "logs"),
            "-p", "no:cacheprovider",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "created: 4/4 workers" in out
    assert out.strip().splitlines()[-1].startswith("=") and "4 failed, 34 passed, 1 skipped" in out.splitlines()[-1]
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 4 and all("test_reads_config_file" in line for line in failed)
    assert "OSError: file not found" in out and "loading config..." in out
    suites = {s.get("name"): s for s in ET.parse(tmp_path / "junit.xml").getroot()}
    assert set(suites) == {"sim-1", "sim-2", "sim-3", "sim-4", "(no board)"}
    # The device tests: test_blinky.py's functions on the fast boards, the output test on every board.
    cases = {board: {c.get("name") for c in suite.iter("testcase")} for board, suite in suites.items()}
    assert {"test_version[sim-1]", "test_display[sim-3]", "checksums[sim-1]"} <= cases["sim-1"] | cases["sim-3"]
    assert "checksums[sim-2]" in cases["sim-2"] and not any(n.startswith("test_version") for n in cases["sim-2"])
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["sim-1", "sim-2", "sim-3", "sim-4"]
    check_table_as_the_readme_shows(out, tmp_path / "junit.xml", tmp_path / "logs")


def readme_demo_table() -> list[str]:
    """The per-board table the README shows the demo ending with."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("= boardfarm: results per board =")
    return readme[readme.rindex("\n", 0, start) + 1 : readme.index("```", start)].splitlines()


def check_table_as_the_readme_shows(out: str, junit: Path, logs: Path) -> None:
    """Same columns, rows and footer lines as the README's table (times and counts vary)."""
    want = readme_demo_table()
    got = out[out.rindex("\n", 0, out.index("= boardfarm: results per board =")) + 1 :].strip().splitlines()
    assert got[1].split() == want[1].split()  # board platform passed failed errors skipped time health
    rows = {line.split()[0]: line.split() for line in got[2:] if line.startswith(("sim-", "("))}
    wanted = {line.split()[0]: line.split() for line in want[2:] if line.startswith(("sim-", "("))}
    assert rows.keys() == wanted.keys()
    for name, row in rows.items():  # platform, failed, errors, skipped and health as shown
        assert [row[i] for i in (1, 3, 4, 5)] == [wanted[name][i] for i in (1, 3, 4, 5)]
        assert row[7:] == wanted[name][7:]
    footer = [line for line in want if line.startswith(("JUnit per board: ", "serial logs: "))]
    assert footer == [
        "JUnit per board: boardfarm-results/junit.xml",
        "serial logs: boardfarm-results/serial-logs/<board>/",
    ]
    assert f"JUnit per board: {junit}" in got and f"serial logs: {logs}/<board>/" in got
