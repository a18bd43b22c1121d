"""The examples of the original design document (docs/seed/events.rst) run with only the
import changed (``from evkit import workflow``) and its obvious typos fixed."""

from __future__ import annotations

import pathlib
import re
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

import evkit
from evkit import workflow

SEED = pathlib.Path(__file__).parents[2] / "docs" / "seed" / "events.rst"

# The only edits allowed: the import line, and the typos the design brief names.
EDITS = [
    ("from ray import workflow", "from evkit import workflow"),
    ("event_2.step", "event2_step"),
    ("self.consuemr", "self.consumer"),
    # The text says listeners subclass EventListener; the Kafka example forgot the base.
    ("class QueueEventListener:", "class QueueEventListener(EventListener):"),
]


def seed_blocks() -> list[str]:
    text = SEED.read_text()
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text):
        code = "\n".join(line[4:] for line in match.group(1).splitlines())
        for old, new in EDITS:
            code = code.replace(old, new)
        blocks.append(code)
    return blocks


def test_the_seed_has_the_four_examples_we_run() -> None:
    blocks = seed_blocks()
    assert len(blocks) == 4
    assert "gather.step(event1_step, event2_step).run()" in blocks[0]


@pytest.fixture
def fake_wall_clock(store_path: str) -> Iterator[evkit.FakeClock]:
    """The first example waits 60 s of wall-clock time; a fake clock that starts at the
    real time lets it run exactly as written without the test waiting a minute."""
    clock = evkit.FakeClock(start=time.time())
    workflow.init(storage=store_path, loop="thread", clock=clock)
    yield clock
    workflow.shutdown()


def test_gather_runs_after_both_timers(fake_wall_clock: evkit.FakeClock) -> None:
    namespace: dict[str, object] = {}
    code = seed_blocks()[0]
    *definitions, last = code.strip().splitlines()
    exec("\n".join(definitions), namespace)
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=eval(last.strip(), namespace)))
    runner.start()
    fake_wall_clock.wait_for_sleepers(2)
    # The deadlines were taken from the real clock a moment after the fake one started.
    fake_wall_clock.advance(30.5)  # the 30 s timer fires; gather still waits for the 60 s one
    fake_wall_clock.wait_for_sleepers(1)
    assert runner.is_alive()
    fake_wall_clock.advance(30)
    runner.join(timeout=10)
    assert outcome["result"] == (None, None)
    states = evkit.sql("SELECT state FROM events").fetchall()
    assert states == [("committed",), ("committed",)]


def test_the_listener_interface_matches_evkits(runtime: evkit.Runtime) -> None:
    namespace: dict[str, object] = {"Event": object}
    exec(seed_blocks()[1], namespace)
    seed_listener = namespace["EventListener"]
    for method in ("__init__", "poll_for_event", "event_checkpointed"):
        assert hasattr(seed_listener, method)
        assert hasattr(workflow.EventListener, method)


def test_the_timer_listener_example_runs_as_a_workflow(runtime: evkit.Runtime) -> None:
    namespace: dict[str, object] = {"EventListener": workflow.EventListener}
    exec("import asyncio, time\n" + seed_blocks()[2], namespace)
    timer = namespace["TimerListener"]
    assert workflow.wait_for_event(timer, time.time()).run(workflow_id="t") is None  # type: ignore[arg-type]


class Consumer:
    """A stand-in for a Kafka consumer with the calls the seed's example makes; its offsets
    are committed only by commit(), like ``enable.auto.commit=False``."""

    messages: ClassVar[list[str]] = ["m0", "m1"]
    committed: ClassVar[list[str]] = []
    polled: ClassVar[list[str]] = []

    def __init__(self, config: dict[str, object]) -> None:
        assert config == {"enable.auto.commit": False}

    def subscribe(self, topic: str) -> None:
        self.topic = topic

    async def poll(self) -> str:
        message = Consumer.messages[len(Consumer.committed)]
        Consumer.polled.append(message)
        return message

    def commit(self, message: str, asynchronous: bool) -> None:
        assert not asynchronous
        Consumer.committed.append(message)


def test_the_queue_listener_commits_only_after_the_checkpoint(runtime: evkit.Runtime) -> None:
    Consumer.committed, Consumer.polled = [], []
    namespace: dict[str, object] = {"Consumer": Consumer, "EventListener": workflow.EventListener}
    exec(seed_blocks()[3], namespace)
    listener = namespace["QueueEventListener"]
    assert workflow.wait_for_event(listener, "topic").run(workflow_id="q") == "m0"
    assert Consumer.polled == ["m0"]
    assert Consumer.committed == ["m0"]
    row = evkit.sql("SELECT state, payload, commits FROM events").fetchall()
    assert row == [("committed", '"m0"', 1)]
