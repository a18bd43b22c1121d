"""Step fingerprints and the record a run stores for them (no store, no loop)."""

from __future__ import annotations

import pytest

from evkit import codec, workflow
from evkit.dag import FlatDag, flatten
from evkit.execution.plan import make_plan
from evkit.execution.prints import (
    EVENT_PRINT,
    DagCodes,
    StoredCodesMismatch,
    dag_codes,
    decode_record,
    encode_codes,
    live_and_stored_prints,
    step_prints,
    stored_prints,
)
from evkit.fingerprint import function_fingerprint


@workflow.step
def one(i: int) -> int:
    return 1


@workflow.step
def total(*values: int) -> int:
    return sum(values)


@workflow.step
def scale(x: int, *, factor: int = 1, table: list[int] | None = None) -> int:
    return x * factor


def _stored(dag: FlatDag) -> FlatDag:
    loaded = codec.loads(codec.dumps(dag))  # as the store keeps it and a re-run loads it
    assert isinstance(loaded, FlatDag)
    return loaded


def test_a_fan_out_of_one_function_records_two_code_digests_and_no_argument() -> None:
    dag = flatten(total.step(*[one.step(i) for i in range(1_000)]))
    codes = dag_codes(dag)
    # In the order of the steps that first use each function: the fan-out's, then total's.
    assert codes == DagCodes(codes=(function_fingerprint(one), function_fingerprint(total)), arguments={})
    assert decode_record(encode_codes(codes)) == codes
    assert len(encode_codes(codes)) < 200


def test_only_arguments_that_are_not_plain_scalars_or_steps_are_digested_at_the_call() -> None:
    dag = flatten(
        total.step(
            scale.step(one.step(0), factor=2),
            scale.step(one.step(1), table=[1, 2]),
            scale.step([one.step(2)]),  # type: ignore[arg-type]
        )
    )
    assert sorted(dag_codes(dag).arguments) == ["scale_1", "scale_2"]


def test_the_stored_side_derived_from_the_record_equals_the_live_side_for_an_unchanged_dag() -> None:
    def build() -> FlatDag:
        return flatten(
            total.step(
                scale.step(one.step(0), factor=2),
                scale.step(one.step(1), table=[1, 2]),
                workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"),
                one.step(None),  # type: ignore[arg-type]
            )
        )

    first = build()
    record = encode_codes(dag_codes(first))
    live, before = live_and_stored_prints(build(), dag_codes(build()), record, lambda: _stored(first))
    assert live == before
    assert before["approval"] == EVENT_PRINT


def test_the_stored_code_digest_is_the_recorded_one_never_the_stored_code_digested_again() -> None:
    dag = flatten(scale.step(one.step(0), factor=2))
    recorded = ("a" * 32, "b" * 32)  # what the functions were when the run started
    prints = stored_prints(encode_codes(DagCodes(codes=recorded)), _stored(dag))
    assert [prints["one"][0], prints["scale"][0]] == list(recorded)
    plan = make_plan(
        workflow_id="w",
        dag=dag,
        prints=step_prints(dag, dag_codes(dag)),
        stored_prints=prints,
        checkpointed={"one", "scale"},
        started={"one", "scale"},
        generations={},
        revision=1,
    )
    assert dict(plan.rerun) == {"one": "code changed", "scale": "code changed"}


def test_a_record_that_does_not_fit_the_stored_dag_falls_back_to_digesting_the_stored_code() -> None:
    dag = flatten(scale.step(one.step(0), factor=2))
    wrong = DagCodes(codes=("a" * 32,))  # one digest for two functions
    with pytest.raises(StoredCodesMismatch):
        step_prints(dag, wrong)
    assert stored_prints(encode_codes(wrong), _stored(dag)) == step_prints(dag, dag_codes(dag))


def test_a_record_of_an_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^an unknown fingerprint record: str$"):
        decode_record(codec.dumps("something else"))


def test_a_function_step_id_that_now_names_an_event_step_reruns_its_downstream() -> None:
    stored = flatten(scale.step(one.step(0)))
    dag = flatten(scale.step(workflow.wait_for_event(workflow.ManualListener, key="k", name="one")))
    plan = make_plan(
        workflow_id="w",
        dag=dag,
        prints=step_prints(dag, dag_codes(dag)),
        stored_prints=step_prints(stored, dag_codes(stored)),
        checkpointed={"one", "scale"},
        started={"one", "scale"},
        generations={},
        revision=1,
    )
    assert dict(plan.rerun) == {"one": "code changed", "scale": "input changed"}
