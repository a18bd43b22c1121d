"""A run's definitions in the store: its first one, a re-run's, a fork's, and reading one back.

The engine asks this module what a run is made of before it executes: the DAG to store
for a new run; for a re-run, the plan (what is reused, what runs again and why) and the
new definition and generations it supersedes the old ones with; for a fork, the copy of
another run's checkpoints; for a resume, the stored DAG, and a warning when this process
defines a step still to run differently. The decisions themselves are pure code
(``evkit.execution.plan``, ``evkit.execution.prints``); this module queues their rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from evkit import codec
from evkit.dag import FlatDag, flat_dag_from_rows, live_step_function
from evkit.errors import RunStateError, WorkflowNotFoundError, WorkflowNotResumableError
from evkit.execution.plan import RunPlan, make_plan, resolve_step_names
from evkit.execution.prints import DagCodes, dag_codes, encode_codes, live_and_stored_prints, stored_prints
from evkit.fingerprint import function_fingerprint
from evkit.missing_code import MissingCode, find_missing_code, load_rows_with_placeholders
from evkit.store import WriteQueue, now
from evkit.store.reads import FORK_RUN_SQL, StoredRun, run_exists
from evkit.store.rows import RunDefinitionRecord, StepGenerationRecord

logger = logging.getLogger("evkit")


@dataclass(frozen=True, slots=True, kw_only=True)
class RerunRequest:
    """What a re-run is asked to do beyond comparing fingerprints.

    Attributes:
        repoll: Event steps (ids or ``name=``) to poll again.
        rerun: Function steps (ids or ``name=``) to run again though unchanged.
        fork_from: The run whose checkpoints a new run starts from (``workflow.fork``).
    """

    repoll: tuple[str, ...] = ()
    rerun: tuple[str, ...] = ()
    fork_from: str | None = None


def _missing_code_message(workflow_id: str, missing: list[MissingCode]) -> str:
    parts = []
    for item in missing:
        what = (
            f"module {item.module!r}" if item.name is None else f"{item.name!r} from module {item.module!r}"
        )
        users = f" (used by step {', '.join(map(repr, item.steps))})" if item.steps else ""
        parts.append(f"{what}{users}: {item.error}")
    return (
        f"Run {workflow_id!r} cannot be resumed: its stored steps refer to code that cannot be "
        f"imported now: {'; '.join(parts)}. Make the module importable again (install it, or put "
        f"its directory on sys.path) and resume, or delete the run with workflow.delete({workflow_id!r})."
    )


class RunDefinitions:
    """Reads and writes runs' definitions through the store's write queue.

    Args:
        queue: The store's write queue (on the engine's loop).
        store_path: The store's file, as error messages name it.
    """

    def __init__(self, queue: WriteQueue, store_path: str) -> None:
        self._queue = queue
        self._store_path = store_path

    def define(
        self, workflow_id: str, dag: FlatDag, metadata: Mapping[str, object] | None, codes: DagCodes | None
    ) -> None:
        """Queue a new run's definition: its DAG, metadata and fingerprint record."""
        self._queue.append(
            RunDefinitionRecord(
                workflow_id=workflow_id,
                created_at=now(),
                dag_blob=codec.dumps(dag),
                output_step=dag.output,
                user_metadata=codec.to_json(dict(metadata or {})),
                fingerprints_blob=encode_codes(codes if codes is not None else dag_codes(dag)),
            )
        )

    def resolve_names(
        self, workflow_id: str, dag: FlatDag, request: RerunRequest
    ) -> tuple[set[str], set[str]]:
        """The step ids ``request`` names to poll and to run again.

        Raises:
            ValueError: A name is unknown (the message lists the known steps).
        """
        repoll = resolve_step_names(
            dag, request.repoll, argument="repoll", workflow_id=workflow_id, kind="event"
        )
        rerun = resolve_step_names(
            dag, request.rerun, argument="rerun", workflow_id=workflow_id, kind="function"
        )
        return repoll, rerun

    def plan(
        self,
        workflow_id: str,
        dag: FlatDag,
        codes: DagCodes | None,
        stored: StoredRun,
        request: RerunRequest,
    ) -> RunPlan:
        """Compare ``dag`` with the stored run; ``codes`` is ``None`` when ``dag`` is the stored one."""
        repoll, rerun = self.resolve_names(workflow_id, dag, request)
        if codes is None:  # a fork of the stored DAG: compared with itself
            prints = before = stored_prints(stored.fingerprints_blob, dag)
        else:
            prints, before = live_and_stored_prints(
                dag, codes, stored.fingerprints_blob, lambda: self._stored_dag_or_none(stored)
            )
        checkpointed = set(stored.results)
        checkpointed.update(step_id for step_id, event in stored.events.items() if event.checkpointed)
        return make_plan(
            workflow_id=workflow_id,
            dag=dag,
            prints=prints,
            stored_prints=before,
            checkpointed=checkpointed,
            started=stored.started,
            generations=stored.generations,
            revision=stored.revision,
            repoll=repoll,
            rerun=rerun,
        )

    def supersede(
        self,
        workflow_id: str,
        dag: FlatDag,
        record: bytes,
        stored: StoredRun,
        plan: RunPlan,
        user_metadata: str | None,
    ) -> StoredRun:
        """Queue the run's new definition and its new generations; the checkpoints still valid.

        Queued together with the RUNNING status that follows, so they are durable in one
        transaction before any step runs: a crash leaves the old definition or the new
        one, and a resume continues the re-run.
        """
        recorded_at = now()
        self._queue.append(
            RunDefinitionRecord(
                workflow_id=workflow_id,
                created_at=recorded_at,
                dag_blob=codec.dumps(dag),
                output_step=dag.output,
                user_metadata=user_metadata,
                fingerprints_blob=record,
                revision=plan.revision,
            )
        )
        gone = set()
        for entry in plan.supersede:
            gone.add(entry.step_id)
            self._queue.append(
                StepGenerationRecord(
                    workflow_id=workflow_id,
                    step_id=entry.step_id,
                    generation=entry.generation,
                    revision=plan.revision,
                    reason=entry.reason,
                    recorded_at=recorded_at,
                )
            )
        return dataclasses.replace(
            stored,
            results={k: v for k, v in stored.results.items() if k not in gone},
            continuations={k: v for k, v in stored.continuations.items() if k not in gone},
            attempts={k: v for k, v in stored.attempts.items() if k not in gone},
            events={k: v for k, v in stored.events.items() if k not in gone},
        )

    async def fork(self, source_id: str, workflow_id: str) -> None:
        """Copy run ``source_id``'s definition and checkpoints to the new run ``workflow_id``.

        Raises:
            WorkflowNotFoundError: The store has no run ``source_id``.
            RunStateError: The store already has a run ``workflow_id``.
        """
        if not await self._queue.read(run_exists, source_id):
            raise WorkflowNotFoundError(
                f"workflow.fork({source_id!r}, {workflow_id!r}): run {source_id!r} is not in store "
                f"{self._store_path!r}. Check the id with workflow.list_all().",
                workflow_id=source_id,
            )
        if await self._queue.read(run_exists, workflow_id):
            raise RunStateError(
                f"workflow.fork({source_id!r}, {workflow_id!r}): store {self._store_path!r} already has a "
                f"run {workflow_id!r}. Give the fork a new id.",
                workflow_id=workflow_id,
            )
        for sql in FORK_RUN_SQL:
            self._queue.execute(sql, [workflow_id, source_id])
        # Durable before the fork's run status: the copy is in the batch before it.

    def warn_of_live_definitions(self, workflow_id: str, dag: FlatDag, stored: StoredRun) -> None:
        """Warn when this process defines a step still to run differently from the stored code."""
        differ: list[str] = []
        for step in dag.steps:
            if step.func is None or step.kind != "function" or step.step_id in stored.results:
                continue
            live = live_step_function(step.func)
            if (
                live is not None
                and live is not step.func
                and function_fingerprint(live) != function_fingerprint(step.func)
            ):
                differ.append(f"{step.step_id!r} ({step.func.__module__}.{step.func.__qualname__})")
        if differ:
            logger.warning(
                "Run %r resumes with its stored code, but this process defines step %s differently. "
                "To run the new code, build the DAG again and call node.run(workflow_id=%r): it runs "
                "what changed and reuses every other checkpoint.",
                workflow_id,
                ", ".join(differ),
                workflow_id,
            )

    def _stored_dag_or_none(self, stored: StoredRun) -> FlatDag | None:
        """The stored run's DAG, to compare a re-run with; ``None`` when it cannot be read.

        Code it refers to that is gone is stood in for by placeholders: the comparison
        needs which steps shared a function, not the function (its digest is recorded).
        """
        try:
            return self.load_dag(stored.workflow_id, stored.dag_blob)
        except WorkflowNotResumableError:
            rows = load_rows_with_placeholders(stored.dag_blob)
            return None if rows is None else flat_dag_from_rows(*rows)

    def load_dag(self, workflow_id: str, blob: bytes) -> FlatDag:
        """The run's stored DAG.

        Raises:
            WorkflowNotResumableError: Code it refers to cannot be imported any more.
        """
        try:
            loaded = codec.loads(blob)
        except (ImportError, AttributeError) as exc:
            missing = find_missing_code(blob)
            if not missing:
                raise
            raise WorkflowNotResumableError(
                _missing_code_message(workflow_id, missing), workflow_id=workflow_id
            ) from exc
        assert isinstance(loaded, FlatDag)
        return loaded
