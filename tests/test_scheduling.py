"""The xdist scheduler on its own: workers are fakes that record what they are sent,
driven in the order xdist's DSession calls the scheduler (add_node when a worker is
ready, add_node_collection then schedule() when it has collected, mark_test_complete
after each test, remove_node when it finishes or crashes). The runs on emulated
boards are in test_plugin.py and test_faults.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_boardfarm.identity import TestBoard
from pytest_boardfarm.scheduling import BoardScheduling

BOARDS = ["sim-1", "sim-2", "sim-3"]
TESTS = [f"test_x.py::test_{i}[{board}]" for board in BOARDS for i in range(4)]


@dataclass(eq=False)
class FakeWorker:
    """What the scheduler uses of xdist's WorkerController."""

    id: str
    sent: list[list[int]] = field(default_factory=list)
    shutdown_sent: bool = False

    @property
    def gateway(self) -> SimpleNamespace:
        return SimpleNamespace(id=self.id)

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_sent

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutdown_sent, f"{self.id}: tests sent after its shutdown"
        self.sent.append(list(indices))

    def shutdown(self) -> None:
        self.shutdown_sent = True

    def tests(self) -> list[str]:
        return [TESTS[i] for batch in self.sent for i in batch]


def make_scheduler(workers: int) -> BoardScheduling:
    config = SimpleNamespace(getvalue=lambda name: [f"{workers}*popen"] if name == "tx" else None, option=None)

    def collected_by(worker_id: str) -> dict[str, TestBoard]:
        return {nodeid: TestBoard(board=nodeid[-6:-1], test=nodeid.split("[")[0]) for nodeid in TESTS}

    log: Any = SimpleNamespace(loadscopesched=lambda *args: None)
    return BoardScheduling(config, log, BOARDS, collected_by)  # type: ignore[arg-type]


def collect(sched: BoardScheduling, worker: FakeWorker) -> None:
    sched.add_node_collection(worker, TESTS)
    if sched.collection_is_completed:
        sched.schedule()


def complete(sched: BoardScheduling, worker: FakeWorker, count: int) -> None:
    """The worker reports its next ``count`` tests done, in order."""
    done = {nodeid for unit in sched.assigned_work[worker].values() for nodeid, ok in unit.items() if ok}
    for nodeid in [t for t in worker.tests() if t not in done][:count]:
        sched.mark_test_complete(worker, TESTS.index(nodeid))


def test_the_first_worker_to_collect_starts_while_the_others_are_still_collecting() -> None:
    sched = make_scheduler(3)
    gw0, gw1, gw2 = (FakeWorker(f"gw{n}") for n in range(3))
    for worker in (gw0, gw1, gw2):
        sched.add_node(worker)
    collect(sched, gw0)
    assert gw0.tests() == TESTS[:4] and not gw1.sent and not gw2.sent
    complete(sched, gw0, 3)  # one test left: it keeps it (the others still collect)
    assert gw0.tests() == TESTS[:4]
    collect(sched, gw1)
    assert gw1.tests() == TESTS[4:8]  # its own board, not the rest of gw0's
    collect(sched, gw2)
    assert gw2.tests() == TESTS[8:]
    complete(sched, gw0, 1)
    assert gw0.shutdown_sent  # nothing left for it


def test_a_crash_before_another_worker_has_collected_sends_that_worker_nothing() -> None:
    """The race that made early start an INTERNALERROR: remove_node rescheduled every
    worker, and one that had not collected yet had no collection to index the tests in."""
    sched = make_scheduler(2)
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    sched.add_node(gw0)
    sched.add_node(gw1)
    collect(sched, gw0)
    complete(sched, gw0, 1)
    crashed = sched.remove_node(gw0)  # gw0 dies in its second test
    assert crashed == TESTS[1]
    assert not gw1.sent  # not yet collected: no work sent
    gw2 = FakeWorker("gw2")  # xdist's replacement
    sched.add_node(gw2)
    collect(sched, gw1)
    collect(sched, gw2)
    while not sched.tests_finished:  # both run their tests, one at a time each
        complete(sched, gw1, 1)
        complete(sched, gw2, 1)
    sent = gw1.tests() + gw2.tests()
    assert sorted(sent) == sorted(TESTS[2:])  # the crashed test does not run again; the rest all do
    assert any(TESTS[2:4] == w.tests()[4:6] for w in (gw1, gw2))  # sim-1's last two, together, after a board


def test_a_worker_that_collected_other_tests_gets_none_and_is_shut_down(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    sched = make_scheduler(2)
    monkeypatch.setattr(sched, "_report_different_collection", lambda node, collection: reported.append(node))
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    sched.add_node(gw0)
    sched.add_node(gw1)
    collect(sched, gw0)
    sched.add_node_collection(gw1, TESTS[:-1])
    sched.schedule()
    assert reported == [gw1] and gw1.shutdown_sent and not gw1.sent
    complete(sched, gw0, 3)
    assert gw0.tests() == TESTS[:8]  # gw1 is not waited for: gw0 takes the next board
