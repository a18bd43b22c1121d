"""wait_for_event checks the listener class and the arguments where the wait is written:
mistakes a resume cannot fix never reach a run."""

from __future__ import annotations

import re
from collections.abc import Awaitable

import pytest

import evkit
from evkit import workflow
from evkit.listeners.http import HTTPListener
from evkit.listeners.redis_streams import RedisStreamListener


class PlainPoll(workflow.EventListener):
    def poll_for_event(self, key: str) -> dict[str, object]:  # type: ignore[override]
        return {"key": key}


class NeedsConfig(workflow.EventListener):
    def __init__(self, url: str) -> None:
        self.url = url

    async def poll_for_event(self) -> str:  # type: ignore[override]
        return self.url


class TwoArguments(workflow.EventListener):
    async def poll_for_event(self, topic: str, partition: int = 0) -> str:  # type: ignore[override]
        return topic


class NoPoll(workflow.EventListener):
    pass


class PlainCommit(workflow.EventListener):
    async def poll_for_event(self) -> str:  # type: ignore[override]
        return "event"

    def event_checkpointed(self, event: object) -> None:  # type: ignore[override]
        pass


class HandsBackACoroutine(workflow.ManualListener):
    """A plain def returning another coroutine on purpose (the bench's listener does)."""

    def poll_for_event(self, key: str) -> Awaitable[object]:  # type: ignore[override]
        return super().poll_for_event(key)


def test_a_plain_def_poll_for_event_is_refused_at_wait_for_event() -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError,
        match=r"^Listener class 'PlainPoll': poll_for_event must be a coroutine function "
        r"\(`async def poll_for_event\(self, \.\.\.\)`\), got a plain function: the engine awaits "
        r"what it returns\. Write `async def poll_for_event`;",
    ):
        workflow.wait_for_event(PlainPoll, "k")


def test_a_plain_def_event_checkpointed_is_refused_too() -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError,
        match=r"^Listener class 'PlainCommit': event_checkpointed must be a coroutine function",
    ):
        workflow.wait_for_event(PlainCommit)


def test_a_plain_def_annotated_as_returning_an_awaitable_is_accepted() -> None:
    assert workflow.wait_for_event(HandsBackACoroutine, "k").name == "HandsBackACoroutine"


def test_a_constructor_that_needs_arguments_is_refused() -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError,
        match=r"^Listener class 'NeedsConfig' cannot be made with no arguments: its constructor is "
        r"NeedsConfig\(url: 'str'\)\. The engine makes a fresh instance with NeedsConfig\(\) for "
        r"every wait \(and again on resume\)\. Pass what the listener needs as arguments of "
        r"wait_for_event \(they reach poll_for_event\), or give the constructor's parameters defaults\.$",
    ):
        workflow.wait_for_event(NeedsConfig)


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((), {}, "missing a required argument: 'topic'"),
        (("t", 1, 2), {}, "too many positional arguments"),
        (("t",), {"offset": 3}, "got an unexpected keyword argument 'offset'"),
    ],
)
def test_arguments_that_do_not_fit_poll_for_event_are_refused(
    args: tuple[object, ...], kwargs: dict[str, object], problem: str
) -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError,
        match=rf"^Listener class 'TwoArguments': the arguments of wait_for_event do not fit "
        rf"poll_for_event\(topic: 'str', partition: 'int' = 0\): {re.escape(problem)}\. Pass what "
        r"poll_for_event takes \(after self\): wait_for_event passes its arguments on to it\.$",
    ):
        workflow.wait_for_event(TwoArguments, *args, **kwargs)


def test_arguments_that_fit_are_accepted_also_as_upstream_nodes() -> None:
    @workflow.step
    def topic() -> str:
        return "t"

    workflow.wait_for_event(TwoArguments, "t")
    workflow.wait_for_event(TwoArguments, topic.step(), partition=2)
    workflow.wait_for_event(TwoArguments, topic="t")


def test_a_listener_that_does_not_override_poll_for_event_is_refused() -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError,
        match=r"^Listener class 'NoPoll' does not override poll_for_event\. Define "
        r"`async def poll_for_event\(self, \.\.\.\)` returning the event\.$",
    ):
        workflow.wait_for_event(NoPoll)


def test_the_built_in_listeners_pass_the_checks() -> None:
    workflow.wait_for_event(workflow.TimerListener, 1.0)
    workflow.wait_for_event(workflow.ManualListener, key="k")
    workflow.wait_for_event(workflow.ManualListener, "k")
    workflow.wait_for_event(HTTPListener, "k")
    workflow.wait_for_event(RedisStreamListener, "redis://localhost", "stream", "group", "consumer-1")
