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
