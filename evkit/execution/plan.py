"""Re-runs: which checkpoints of a stored run a DAG may reuse, and which steps run again.

``node.run(workflow_id=ID)`` on a run the store already has compares, step id by step
id, the fingerprints of the DAG it is given with the stored run's (both computed by
``evkit.execution.prints``), and this module decides. It is pure: it reads no store
and runs nothing (the engine does both).

The rule: a function step whose fingerprint changed runs again, and so does everything
downstream of it; every other checkpoint is reused. An event step keeps its checkpointed
event whatever changed (its listener, its arguments, its upstream steps): an event is
committed at its source and cannot be fetched twice. It is polled again only when the
user names it (``repoll``), and then its downstream runs again too. An event step still
waiting (nothing checkpointed) whose upstream step runs again starts its wait anew.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from evkit.dag import FlatDag, FlatStep
from evkit.execution.prints import EVENT_PRINT, StepPrint as StepPrint

Reason = Literal["code changed", "input changed", "added", "repoll", "rerun"]
# How many step ids the one-line summary names in each list before "and N more".
_SUMMARY_NAMES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Supersede:
    """A step whose stored rows become history: it runs again as ``generation``."""

    step_id: str
    generation: int
    reason: Reason | Literal["removed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What a re-run of a stored run does: see ``RunHandle.plan``.

    Attributes:
        workflow_id: The run.
        revision: The run's definition this plan makes (2 for the first re-run).
        reused: Steps whose checkpoint (result or event) is used as it is.
        rerun: Steps that run again, with why: ``code changed``, ``input changed``
            (a literal argument or an upstream step changed, or runs again),
            ``added`` (new in this DAG), ``repoll`` (an event step named in
            ``repoll``), ``rerun`` (named in ``fork(rerun=...)``).
        pending: Unchanged steps with no checkpoint yet: they run (or wait) as on resume.
        removed: Steps of the stored run this DAG no longer has; their rows are kept,
            marked superseded.
        supersede: The generation each step with stored rows starts (what the store records).
    """

    workflow_id: str
    revision: int
    reused: tuple[str, ...] = ()
    rerun: Mapping[str, Reason] = field(default_factory=dict)
    pending: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    supersede: tuple[Supersede, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the DAG differs from the stored one (or a step was named to run again)."""
        return bool(self.rerun or self.removed)

    def summary(self) -> str:
        """One line naming the steps reused and the steps that run again, and why."""
        parts = [f"reused {_count(self.reused)}{_names(self.reused)}"]
        if self.rerun:
            by_reason = [f"{step_id} ({reason})" for step_id, reason in self.rerun.items()]
            parts.append(f"re-running {_count(self.rerun)}: {_listed(by_reason)}")
        else:
            parts.append("re-running none")
        if self.pending:
            parts.append(f"not run yet {_count(self.pending)}{_names(self.pending)}")
        if self.removed:
            parts.append(f"removed (kept as history) {_count(self.removed)}{_names(self.removed)}")
        return f"Run {self.workflow_id!r} re-run: " + "; ".join(parts) + "."


def _count(items: Collection[object]) -> str:
    return f"{len(items)} step" + ("" if len(items) == 1 else "s")


def _names(items: Collection[str]) -> str:
    return f": {_listed(list(items))}" if items else ""


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SUMMARY_NAMES])
    more = len(items) - _SUMMARY_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def resolve_step_names(
    dag: FlatDag, names: Iterable[str], *, argument: str, workflow_id: str, kind: Literal["event", "function"]
) -> set[str]:
    """The ids of the steps of ``dag`` that ``names`` name (by step id or by ``name=``).

    Raises:
        ValueError: A name matches no step of that kind; the message lists the known ones.
        TypeError: ``names`` is a str, or holds something that is not a str.
    """
    if isinstance(names, str):
        raise TypeError(
            f"`{argument}` must be a list of step names, got the str {names!r}: write [{names!r}]."
        )
    wanted = list(names)
    if not wanted:
        return set()  # the usual case: no pass over a big DAG
    candidates = [step for step in dag.steps if step.kind == kind]
    by_name: dict[str, list[str]] = {}
    for step in candidates:
        by_name.setdefault(step.step_id, []).append(step.step_id)
        if step.name != step.step_id:
            by_name.setdefault(step.name, []).append(step.step_id)
    found: set[str] = set()
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"`{argument}` must hold step names (str), got {name!r}.")
        if name not in by_name:
            known = ", ".join(repr(s.step_id) for s in candidates[:20]) or "none"
            what = "event steps" if kind == "event" else "function steps"
            raise ValueError(
                f"`{argument}` names {name!r}, which is not one of the {what} of run {workflow_id!r}. "
                f"Its {what}: {known}. Name a step by its id or by its `name=`."
            )
        found.update(by_name[name])
    return found


def make_plan(
    *,
    workflow_id: str,
    dag: FlatDag,
    prints: Mapping[str, StepPrint],
    stored_prints: Mapping[str, StepPrint],
    checkpointed: Collection[str],
    started: Collection[str],
    generations: Mapping[str, int],
    revision: int,
    repoll: Collection[str] = (),
    rerun: Collection[str] = (),
) -> RunPlan:
    """Compare ``dag`` with a stored run and decide, step by step, what to reuse.

    Args:
        workflow_id: The run.
        dag: The DAG to run now.
        prints: Its fingerprints (``evkit.execution.prints.live_and_stored_prints``).
        stored_prints: The fingerprints of the run's current definition, computed the
            same way (a step's fingerprint need not cover its upstream steps': what
            runs again, runs again with its downstream).
        checkpointed: Step ids with a checkpoint in their current generation (a function
            step's result, an event step's checkpointed event).
        started: Step ids with any row in their current generation.
        generations: The current generation of each step that has more than one.
        revision: The stored run's current revision (the plan makes the next).
        repoll: Event step ids to poll again.
        rerun: Function step ids to run again though unchanged.
    """
    dirty: dict[str, Reason] = {}
    reused: list[str] = []
    pending: list[str] = []
    stored_print = stored_prints.get
    for step in dag.steps:
        step_id = step.step_id
        before = stored_print(step_id)
        if (
            before is not None
            and before == prints[step_id]
            and (not dirty or not any(up in dirty for up in step.upstream))
            and step_id not in repoll
            and step_id not in rerun
        ):
            reason = None  # the usual case, without a call per step
        else:
            reason = _reason(step, prints[step_id], before, dirty, repoll, rerun, step_id in checkpointed)
        if reason is not None:
            dirty[step_id] = reason
        elif step_id in checkpointed:
            reused.append(step_id)
        else:
            pending.append(step_id)
    in_dag = {step.step_id for step in dag.steps}
    supersede: list[Supersede] = []
    for step_id, reason in dirty.items():
        # A step with rows in its generation starts a new one; so does an added step (a
        # step id seen before, then removed, continues its numbering). A changed step
        # that never ran just runs, in the generation it is in.
        if step_id in started or reason == "added":
            current = generations.get(step_id, 1 if step_id in started else 0)
            supersede.append(Supersede(step_id=step_id, generation=current + 1, reason=reason))
    removed: list[str] = []
    for step_id in sorted(set(started) - in_dag):
        # A continuation's steps ("parent/child") go with their parent.
        parent = step_id.split("/", 1)[0]
        if parent in in_dag:
            if parent in dirty:
                current = generations.get(step_id, 1)
                supersede.append(Supersede(step_id=step_id, generation=current + 1, reason=dirty[parent]))
            continue
        removed.append(step_id)
        supersede.append(
            Supersede(step_id=step_id, generation=generations.get(step_id, 1) + 1, reason="removed")
        )
    removed += sorted(
        step_id
        for step_id in set(stored_prints) - in_dag - set(started)
        if step_id.split("/", 1)[0] not in in_dag
    )
    return RunPlan(
        workflow_id=workflow_id,
        revision=revision + 1,
        reused=tuple(reused),
        rerun=dirty,
        pending=tuple(pending),
        removed=tuple(removed),
        supersede=tuple(supersede),
    )


def _reason(
    step: FlatStep,
    now: StepPrint,
    before: StepPrint | None,
    dirty: Mapping[str, Reason],
    repoll: Collection[str],
    rerun: Collection[str],
    checkpointed: bool,
) -> Reason | None:
    if step.kind == "event":
        if step.step_id in repoll:
            return "repoll"
        if before is not None and before != EVENT_PRINT:
            # A function step's id now names an event step: its stored result is no event
            # (and its downstream must not take the new step as unchanged).
            return "code changed"
        if not checkpointed and any(up in dirty for up in step.upstream):
            # Nothing was consumed yet: the wait starts again with its new arguments (a
            # timer's new deadline), not the ones its stored wait recorded.
            return "input changed"
        return None  # a checkpointed event is kept whatever changed: see the module docstring
    if before is None:
        return "added"
    if step.step_id in rerun:
        return "rerun"
    if before[0] != now[0]:
        return "code changed"
    if before[1] != now[1] or any(up in dirty for up in step.upstream):
        return "input changed"
    return None
