"""The CI workflow and the oldest-floor script say what the README and pyproject.toml claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib


ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
EXAMPLE = ROOT / "examples" / "ci" / "self-hosted-farm.yml"

# The current major version of each action the workflows use: an older one is out of date
# (Node 16/20 runtimes, deprecated artifact storage), an unknown one must be added here.
CURRENT_ACTIONS = {"actions/checkout": 7, "actions/setup-python": 7, "actions/upload-artifact": 7}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(job))


def test_permissions_are_read_only(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert "write" not in str(job.get("permissions", ""))


@pytest.mark.parametrize("path", [WORKFLOW, EXAMPLE], ids=["ci", "example"])
def test_actions_are_current(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    used = [step["uses"] for job in data["jobs"].values() for step in job["steps"] if "uses" in step]
    assert used
    for use in used:
        name, _, version = use.partition("@")
        assert name in CURRENT_ACTIONS, f"{use}: unknown action, add its current major version here"
        assert re.fullmatch(r"v\d+", version), f"{use}: pin a major version"
        assert int(version[1:]) >= CURRENT_ACTIONS[name], f"{use}: out of date"


def test_matrix_runs_the_oldest_floors_on_the_oldest_python_and_the_newest_on_the_newest(
    workflow: dict[str, Any], project: dict[str, Any]
) -> None:
    test = workflow["jobs"]["test"]
    include = {entry["versions"]: entry["python"] for entry in test["strategy"]["matrix"]["include"]}
    pythons = sorted(
        (
            c.rsplit(":: ", 1)[1]
            for c in project["classifiers"]
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        ),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert include == {"oldest": pythons[0], "newest": pythons[-1]}
    assert project["requires-python"] == f">={pythons[0]}"
    text = runs(test)
    assert "scripts/oldest-constraints" in text and "PIP_CONSTRAINT" in text  # every install pinned to the floors
    assert "--upgrade --upgrade-strategy eager" in text  # newest: everything upgraded
    assert test["strategy"]["fail-fast"] is False


def test_pip_is_cached_and_the_tests_junit_is_uploaded(workflow: dict[str, Any]) -> None:
    for job in workflow["jobs"].values():
        for step in steps(job):
            if str(step.get("uses", "")).startswith("actions/setup-python"):
                assert step["with"]["cache"] == "pip"
    test = workflow["jobs"]["test"]
    match = re.search(r"bash scripts/test .*--junitxml=(\S+)/", runs(test))
    assert match, "the tests write a JUnit file"
    upload = next(s for s in steps(test) if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"  # failed runs are the ones whose results matter
    assert f"{match.group(1)}/" in upload["with"]["path"]


def test_the_newest_run_also_runs_the_demo_and_uploads_its_results(workflow: dict[str, Any]) -> None:
    """README: "with the newest of each ... (plus the demo); it uploads ... the demo's JUnit file and logs"."""
    test = workflow["jobs"]["test"]
    (demo,) = [s for s in steps(test) if "bash scripts/demo" in str(s.get("run", ""))]
    assert demo["if"] == "matrix.versions == 'newest'"
    assert (
        "--farm-junit boardfarm-results/junit.xml --farm-log-dir boardfarm-results/serial-logs"
        in (ROOT / "scripts" / "demo").read_text()
    )
    upload = next(s for s in steps(test) if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "boardfarm-results/" in upload["with"]["path"].split()


def test_the_readme_names_every_runtime_dependency(project: dict[str, Any]) -> None:
    """README, Install in your project: what comes along with the plugin."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    named = re.search(r"It installs as a pytest plugin \(([^;]*) come along;", readme)
    assert named, "the README lists the dependencies that come along"
    names = {re.split(r"[<>=; ]", dep)[0] for dep in project["dependencies"]}
    listed = set(re.findall(r"[a-z][a-z0-9-]+", named.group(1)))
    assert names <= listed, names - listed


def test_a_job_builds_the_package_and_checks_it_with_twine(workflow: dict[str, Any]) -> None:
    package = runs(workflow["jobs"]["package"])
    assert "python -m build" in package
    assert "twine check --strict dist/*" in package


def test_the_self_hosted_example_installs_into_a_virtual_environment() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    text = "\n".join(str(step.get("run", "")) for job in data["jobs"].values() for step in job["steps"])
    assert "python3 -m venv .venv" in text
    for line in text.splitlines():
        if "pip install" in line or "pytest" in line.split(" -m ")[-1][:6]:
            assert line.strip().startswith(".venv/bin/python"), line  # never the system Python (PEP 668)
    assert "pip install pytest-boardfarm" not in text  # no release on PyPI yet


def test_oldest_constraints_are_the_declared_floors(project: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "oldest-constraints")], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    pins = [line for line in out if line]
    assert len(pins) == len(project["dependencies"])
    for requirement, pin in zip(project["dependencies"], pins, strict=True):
        assert pin.split(" ;")[0] == requirement.split(";")[0].strip().replace(">=", "==")
    assert "pluggy==1.2" in pins  # pluggy 1.0/1.1 cannot load new-style hook wrappers


def test_scripts_test_oldest_uses_the_oldest_python_and_the_constraints() -> None:
    text = (ROOT / "scripts" / "test-oldest").read_text()
    assert "versions/3.10.*/bin/python" in text and "python3.10" in text
    assert "scripts/oldest-constraints" in text and '-c "$constraints"' in text
