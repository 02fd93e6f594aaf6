"""Where the host's CPU goes as boards are added: start-up, per test, emulators apart.

Every board runs the same suite (the plugin runs each test on every matching
board), each test ``--work`` seconds of device work (mostly ``microbit.sleep``,
a short compute loop), on 1, 4, 8 (16...) emulated micro:bits with ``-n`` equal
to the board count (``--workers`` sets another, e.g. ``auto`` or ``2``).

Every process of the run (controller, xdist workers) records its own CPU
(``time.process_time``) at checkpoints through a conftest: when the conftest is
imported (the interpreter, pytest, the plugins: "imports"), at collection start
and end, around its first and last test, and at the end; a worker's emulators are
its children, reaped when released, so its ``RUSAGE_CHILDREN`` at the end is
their CPU alone. The bench's own ``RUSAGE_CHILDREN`` covers the whole run; the
machine's busy time (/proc/stat) minus that is what other work on the machine
used meanwhile (the machine may be shared: quote that column).

    efficiency(N)  = wall(1 board) / wall(N boards)   (equal work per board)
    CPU floor      = the run's CPU, emulators included, / cores
    per test       = a worker's CPU from the end of its first test to the end of
                     its last, / (tests - 1): the plugin's and pytest's work per test
                     (the first test boots the emulator)

Prints figures only; asserts nothing.

With ``--repeat N`` each board count runs N times (in rounds: 1, 8, 16, 1, 8,
16...), and the run with the median wall time stands for it.

    python bench/bench_scale.py [--boards 1,4,8] [--tests 20] [--work 0.2] [--workers auto] [--repeat 3] [--all-plugins]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SUITE = """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_device_work(board, i):
    board.exec("import microbit\\nmicrobit.sleep({sleep_ms})\\nx = 0\\nfor i in range(2000):\\n    x += i")
"""

# Runs in every process of the run: the controller and each xdist worker.
CONFTEST = """
import json, os, resource, time
import pytest

_marks = {"imports": (time.process_time(), time.time())}
_tests = []

def _mark(name):
    _marks.setdefault(name, (time.process_time(), time.time()))

@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    _mark("collect_start")

@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    _mark("collect_end")

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _mark("first_test_start")

@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    _tests.append((time.process_time(), time.time()))

def pytest_runtest_logreport(report):
    if report.when == "teardown":  # in the controller: each test's last report
        _tests.append((time.process_time(), time.time()))

@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    worker = getattr(config, "workerinput", {}).get("workerid", "controller")
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # a worker's: its emulators, reaped
    record = {
        "role": worker,
        "marks": _marks,
        "tests": _tests,
        "end": (time.process_time(), time.time()),
        "self_cpu": own.ru_utime + own.ru_stime,
        "children_cpu": children.ru_utime + children.ru_stime,
        "maxrss_mb": own.ru_maxrss / 1024,
    }
    with open(os.environ["BENCH_RECORD"], "a") as f:
        f.write(json.dumps(record) + "\\n")
"""


@dataclass
class Run:
    boards: int
    workers: str
    tests: int  # per board
    wall: float
    cpu_total: float  # every process of the run
    workers_cpu: float
    emulators_cpu: float
    controller_cpu: float
    others_cpu: float  # the rest of the machine, meanwhile
    startup_cpu: float  # median worker: CPU before its first test (imports, plugins, collection)
    imports_cpu: float  # median worker: CPU when the conftest is imported
    collect_cpu: float  # median worker: collection
    per_test_ms: float  # median worker
    first_test_cpu: float  # median worker: its first test (the board's start or connection, its checks)
    after_cpu: float  # median worker: from the end of its last test to pytest_unconfigure
    controller_per_test_ms: float
    collect_wait: float  # wall: the first worker's conftest import to the first test anywhere
    shutdown: float  # wall: the last test's end to the run's exit
    rss_mb: float  # median worker
    idle: tuple[float, float, float]  # idle core-seconds: before the first test, during the tests, after the last


class BusySampler:
    """The machine's busy CPU (/proc/stat) every ``period`` s, on a thread: where the cores sat idle."""

    def __init__(self, period: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), machine_busy()))
            self._stop.wait(period)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), machine_busy()))

    def idle(self, start: float, end: float, cores: int) -> float:
        """Core-seconds nobody used between ``start`` and ``end`` (to the sampling period)."""
        inside = [(t, b) for t, b in self.samples if start <= t <= end]
        if len(inside) < 2:
            return 0.0
        (t0, b0), (t1, b1) = inside[0], inside[-1]
        return max(0.0, cores * (t1 - t0) - (b1 - b0))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(boards: int, tests: int, workers: str, workdir: Path, all_plugins: bool) -> Run:
    farm = workdir / f"farm{boards}.yaml"
    farm.write_text(
        f"locks: {{dir: {workdir / 'locks'}}}\nboards:\n"
        + "".join(f"  - {{name: sim-{i + 1}, emulator: microbit, timeout: 60}}\n" for i in range(boards))
    )
    record = workdir / "record.jsonl"
    record.unlink(missing_ok=True)
    n = str(boards) if workers == "boards" else workers
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--farm", str(farm), "-n", n]
    cmd += ["--farm-log-dir", str(workdir / "logs")]
    env = {**os.environ, "BENCH_RECORD": str(record)}
    if not all_plugins:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        cmd += ["-p", "xdist", "-p", "pytest_boardfarm.plugin"]
    cpu0, busy0, start = children_cpu(), machine_busy(), time.time()
    with BusySampler() as sampler:
        result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=1800)
    end = time.time()
    cpu = children_cpu() - cpu0
    others = machine_busy() - busy0 - cpu
    if result.returncode != 0:
        sys.exit(f"run with {boards} boards failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    records = [json.loads(line) for line in record.read_text().splitlines()]
    controller = next(r for r in records if r["role"] == "controller")
    workers_ = [r for r in records if r["role"] != "controller" and r["tests"]]

    def per_test(r: dict) -> float:
        done = r["tests"]
        return (done[-1][0] - done[0][0]) / (len(done) - 1) if len(done) > 1 else float("nan")

    cores = os.cpu_count() or 1
    first_test_anywhere = min(r["marks"]["first_test_start"][1] for r in workers_)
    last_test = max(r["tests"][-1][1] for r in workers_)
    ctl = controller["tests"]
    return Run(
        boards=boards,
        workers=n if n.isdigit() else f"{n}:{len(workers_)}",  # -n auto: how many it started
        tests=tests,
        wall=end - start,
        cpu_total=cpu,
        workers_cpu=sum(r["self_cpu"] for r in workers_),
        emulators_cpu=sum(r["children_cpu"] for r in workers_),
        controller_cpu=controller["self_cpu"],
        others_cpu=others,
        startup_cpu=statistics.median(r["marks"]["first_test_start"][0] for r in workers_),
        imports_cpu=statistics.median(r["marks"]["imports"][0] for r in workers_),
        collect_cpu=statistics.median(r["marks"]["collect_end"][0] - r["marks"]["collect_start"][0] for r in workers_),
        per_test_ms=statistics.median(per_test(r) for r in workers_) * 1000,
        first_test_cpu=statistics.median(r["tests"][0][0] - r["marks"]["first_test_start"][0] for r in workers_),
        after_cpu=statistics.median(r["self_cpu"] - r["tests"][-1][0] for r in workers_),
        controller_per_test_ms=(ctl[-1][0] - ctl[0][0]) / max(1, len(ctl) - 1) * 1000,
        collect_wait=first_test_anywhere - min(r["marks"]["imports"][1] for r in workers_),
        shutdown=end - last_test,
        rss_mb=statistics.median(r["maxrss_mb"] for r in workers_),
        idle=(
            sampler.idle(start, first_test_anywhere, cores),
            sampler.idle(first_test_anywhere, last_test, cores),
            sampler.idle(last_test, end, cores),
        ),
    )


def median_run(runs: list[Run]) -> Run:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]


def plugin_file() -> str:
    """Where the plugin is imported from, without importing it here."""
    spec = importlib.util.find_spec("pytest_boardfarm")
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).parent / "plugin.py")


def import_cpu(statement: str) -> float:
    """CPU of a fresh interpreter running ``statement`` (median of 3)."""
    spent = []
    for _ in range(3):
        before = children_cpu()
        subprocess.run([sys.executable, "-c", statement], check=True)
        spent.append(children_cpu() - before)
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", default="1,4,8", help="board counts, comma-separated (default 1,4,8)")
    parser.add_argument("--tests", type=int, default=20, help="tests per board (default 20)")
    parser.add_argument("--work", type=float, default=0.2, help="device work per test, seconds (default 0.2)")
    parser.add_argument("--workers", default="boards", help="-n value: 'boards' (default: one per board), auto, N")
    parser.add_argument("--repeat", type=int, default=1, help="runs per board count; the median one is shown")
    parser.add_argument("--all-plugins", action="store_true", help="load every installed pytest plugin")
    args = parser.parse_args()
    sizes = [int(x) for x in args.boards.split(",")]
    sleep_ms = max(0, round(args.work * 1000) - 15)  # the loop takes ~15 ms on the emulated nRF51
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    bare = import_cpu("pass")
    pytest_cpu = import_cpu("import pytest")
    plugin_cpu = import_cpu("import pytest_boardfarm.plugin")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "test_bench.py").write_text(SUITE.format(tests=args.tests, sleep_ms=sleep_ms))
        (workdir / "conftest.py").write_text(CONFTEST)
        rounds = [
            [run(n, args.tests, args.workers, workdir, args.all_plugins) for n in sizes] for _ in range(args.repeat)
        ]
    runs = [median_run([r[i] for r in rounds]) for i in range(len(sizes))]
    cores = os.cpu_count() or 1
    cached = Path(importlib.util.cache_from_source(str(Path(plugin_file())))).exists()
    bytecode = "cached" if cached else "not cached: every process compiles the plugin's modules"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        bytecode += " (PYTHONDONTWRITEBYTECODE is set)"
    plugins = "every installed plugin" if args.all_plugins else "only xdist and pytest-boardfarm loaded"
    repeats = f"median of {args.repeat} runs each; " if args.repeat > 1 else ""
    print(
        f"{args.tests} tests per board, ~{args.work:g} s device work each; {repeats}{cores} cores; {plugins}; "
        f"load average before: {' '.join(load_before)}"
    )
    print(f"the plugin's bytecode: {bytecode}")
    print(
        f"fresh interpreter CPU: bare {bare:.3f} s, import pytest {pytest_cpu:.3f} s, "
        f"import pytest_boardfarm.plugin {plugin_cpu:.3f} s (medians of 3)"
    )
    print(
        f"{'boards':>6} {'-n':>6} {'wall s':>7} {'eff':>5} {'CPU s':>6} {'workers':>7} {'emus':>6} {'ctl':>5}"
        f" {'floor':>6} {'w/floor':>7} {'others':>6} {'busy':>5} | {'start':>6} {'imports':>7} {'collect':>7}"
        f" {'1st':>5} {'ms/test':>7} {'after':>5} {'ctl ms':>6} {'to 1st':>6} {'shutdn':>6} {'RSS MB':>6}"
        f" | {'idle: start':>11} {'tests':>5} {'end':>5}"
    )
    base = runs[0].wall
    for r in runs:
        floor = r.cpu_total / cores
        busy = (r.cpu_total + r.others_cpu) / (cores * r.wall)  # near 100%: the cores were the limit
        print(
            f"{r.boards:>6} {r.workers:>6} {r.wall:>7.2f} {base / r.wall:>5.2f} {r.cpu_total:>6.1f}"
            f" {r.workers_cpu:>7.1f} {r.emulators_cpu:>6.1f} {r.controller_cpu:>5.1f} {floor:>6.1f}"
            f" {r.wall / floor:>7.2f} {r.others_cpu:>6.1f} {busy:>4.0%} | {r.startup_cpu:>6.2f} {r.imports_cpu:>7.2f}"
            f" {r.collect_cpu:>7.3f} {r.first_test_cpu:>5.2f} {r.per_test_ms:>7.1f} {r.after_cpu:>5.2f}"
            f" {r.controller_per_test_ms:>6.1f}"
            f" {r.collect_wait:>6.2f} {r.shutdown:>6.2f} {r.rss_mb:>6.0f}"
            f" | {r.idle[0]:>11.2f} {r.idle[1]:>5.2f} {r.idle[2]:>5.2f}"
        )
    print(
        "CPU columns in seconds of CPU; emus: the emulators (real boards cost the host none); floor: CPU / cores;\n"
        "others: what the rest of the machine used meanwhile; busy: the machine's cores in use, this run and\n"
        "the rest together (near 100%: the wall times tell more about the load than about the plugin);\n"
        "start/imports/collect: a worker's CPU (median) before its first test / at its conftest's import / for\n"
        "collection; 1st: its first test (the board's start); ms/test: per test after its first; after:\n"
        "from its last test to its end (teardown, reports); ctl ms: the controller's per test;\n"
        "to 1st: wall from the first worker's conftest to the first test; shutdn: wall from the last test to\n"
        "the exit; idle: core-seconds the machine left unused before the first test, during the tests, after the last"
    )


if __name__ == "__main__":
    main()
