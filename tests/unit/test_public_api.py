"""The flat public namespaces export exactly what they define (no strays, no gaps)."""

from __future__ import annotations

import types

import pytest

import evkit
from evkit import workflow


@pytest.mark.parametrize("module", [evkit, workflow])
def test_all_lists_every_public_name(module: types.ModuleType) -> None:
    # dir(), not vars(): the optional sources are attributes loaded on first use.
    public = {name for name in dir(module) if not name.startswith("_") and name != "annotations"}
    submodules = {name for name, value in vars(module).items() if isinstance(value, types.ModuleType)}
    exported = set(module.__all__)
    assert exported - public == set(), "names in __all__ that do not exist"
    assert public - exported - submodules == set(), "public names missing from __all__"


def test_the_seed_names_are_in_the_workflow_namespace() -> None:
    for name in (
        "step",
        "wait_for_event",
        "sleep",
        "EventListener",
        "init",
        "run",
        "run_async",
        "resume",
        "resume_async",
        "resume_all",
        "cancel",
        "delete",
        "get_status",
        "get_output",
        "get_metadata",
        "list_all",
        "WorkflowStatus",
        "WorkflowError",
        "WorkflowExecutionError",
        "WorkflowCancellationError",
        "WorkflowNotFoundError",
        "WorkflowNotResumableError",
        "EventTimeoutError",
    ):
        assert hasattr(workflow, name), name
    assert workflow.event_listener.TimerListener is workflow.TimerListener
