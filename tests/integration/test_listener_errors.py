"""Listener mistakes at run time: errors say "resume" only when polling again can help, and
a run whose listener module is gone says which run, step and module, and what to do."""

from __future__ import annotations

import pathlib
import sys
import textwrap
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow


class BrokenPoll(workflow.EventListener):
    async def poll_for_event(self, key: str) -> str:  # type: ignore[override]
        return key.no_such_method()  # type: ignore[attr-defined, no-any-return]


class FlakyPoll(workflow.EventListener):
    async def poll_for_event(self, key: str) -> str:  # type: ignore[override]
        raise ConnectionError("broker unreachable")


async def test_a_mistake_in_poll_for_event_does_not_suggest_a_resume(aruntime: evkit.Runtime) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await workflow.run_async(workflow.wait_for_event(BrokenPoll, "k"), workflow_id="b")
    assert isinstance(info.value.__cause__, AttributeError)
    assert str(info.value) == (
        "Listener BrokenPoll of event step 'BrokenPoll' in run 'b' raised AttributeError(\"'str' "
        "object has no attribute 'no_such_method'\") while polling. This looks like a mistake in the "
        "listener's code, which polling again would repeat: fix BrokenPoll.poll_for_event, then run "
        "the workflow again (a resume reuses the listener class stored with the run, unless it is "
        "imported from a module you fixed)."
    )


async def test_a_transient_poll_error_suggests_a_resume(aruntime: evkit.Runtime) -> None:
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=r"^Listener FlakyPoll of event step 'FlakyPoll' in run 'f' raised "
        r"ConnectionError\('broker unreachable'\) while polling\. Resume the run to poll again "
        r"\(workflow\.resume\('f'\)\)\.$",
    ):
        await workflow.run_async(workflow.wait_for_event(FlakyPoll, "k"), workflow_id="f")


LISTENER_MODULE = """
from evkit import workflow


class GoneListener(workflow.EventListener):
    async def poll_for_event(self, key):
        return await workflow.ManualListener().poll_for_event(key)
"""


@pytest.fixture
def listener_module(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """An importable module of its own, so cloudpickle stores its listener by reference
    (as it would a listener from a user's package); the test deletes it later."""
    module = tmp_path / "gone_listeners.py"
    module.write_text(textwrap.dedent(LISTENER_MODULE))
    sys.path.insert(0, str(tmp_path))
    yield module
    sys.path.remove(str(tmp_path))
    sys.modules.pop("gone_listeners", None)


@pytest.mark.slow
def test_resuming_a_run_whose_listener_module_is_gone_names_run_step_and_module(
    store_path: str, listener_module: pathlib.Path
) -> None:
    import gone_listeners  # type: ignore[import-not-found]

    workflow.init(storage=store_path, loop="thread")
    handle = workflow.run_async(workflow.wait_for_event(gone_listeners.GoneListener, "k"), workflow_id="r")
    handle.snapshot()  # the run is durably RUNNING once run_async returned
    workflow.shutdown()  # the run stays RESUMABLE
    listener_module.unlink()
    sys.modules.pop("gone_listeners")
    workflow.init(storage=store_path, loop="thread")
    try:
        assert workflow.get_status("r") is workflow.RESUMABLE
        with pytest.raises(workflow.WorkflowNotResumableError) as info:
            workflow.resume("r")
        assert str(info.value) == (
            "Run 'r' cannot be resumed: its stored steps refer to code that cannot be imported now: "
            "'GoneListener' from module 'gone_listeners' (used by step 'GoneListener'): No module "
            "named 'gone_listeners'. "
            "Make the module importable again (install it, or put its directory on sys.path) and "
            "resume, or delete the run with workflow.delete('r')."
        )
        assert info.value.workflow_id == "r"
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
        workflow.delete("r")
    finally:
        workflow.shutdown()
