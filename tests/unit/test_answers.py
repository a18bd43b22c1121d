"""evkit.answers: the JSON Schema and form of each kind of model, and validation of answers
into instances, with pydantic (as installed for the tests) and with the plain type check
evkit falls back to without it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Annotated, Literal, TypedDict

import pydantic
import pytest

from evkit import answers
from evkit.answers import InvalidAnswer, answer_json, form_fields, json_schema, model_kind, validate_answer


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclasses.dataclass
class Refund:
    """Decide on a refund."""

    approve: bool
    amount: Annotated[float, "How much to pay back"]
    reason: str = dataclasses.field(default="", metadata={"description": "Shown to the customer"})
    channel: Literal["card", "voucher"] = "card"
    priority: Priority = Priority.LOW
    pay_on: dt.date | None = None


class RefundModel(pydantic.BaseModel):
    approve: bool
    amount: float = pydantic.Field(gt=0, description="How much to pay back")
    channel: Literal["card", "voucher"] = "card"
    at: dt.time | None = None


class RefundDict(TypedDict):
    approve: bool
    count: int


@pytest.fixture(params=["pydantic", "plain"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each dataclass/TypedDict test runs with pydantic validating and with the plain check
    (what users without pydantic get): the adapter lookup then finds no pydantic."""
    answers._adapter.cache_clear()
    if request.param == "plain":
        monkeypatch.setattr(answers, "_adapter", lambda model: None)
    return request.param


def test_model_kind_names_each_kind_and_refuses_other_types() -> None:
    assert [model_kind(m) for m in (Refund, RefundModel, RefundDict)] == [
        "dataclass",
        "pydantic",
        "typeddict",
    ]
    with pytest.raises(
        TypeError,
        match=r"^The model of a question must be a dataclass, a pydantic model or a TypedDict class, "
        r"got <class 'dict'>\.",
    ):
        model_kind(dict)


def test_dataclass_form_has_inputs_defaults_options_and_descriptions() -> None:
    fields = {f["name"]: f for f in form_fields(Refund)}
    assert fields["approve"] == {
        "name": "approve",
        "label": "Approve",
        "input": "checkbox",
        "required": True,
        "nullable": False,
    }
    assert fields["amount"]["input"] == "number"
    assert fields["amount"]["description"] == "How much to pay back"
    assert fields["reason"]["description"] == "Shown to the customer"
    assert fields["reason"]["default"] == ""
    assert (fields["channel"]["input"], fields["channel"]["options"], fields["channel"]["default"]) == (
        "select",
        ["card", "voucher"],
        "card",
    )
    assert (fields["priority"]["options"], fields["priority"]["default"]) == (["low", "high"], "low")
    assert (fields["pay_on"]["input"], fields["pay_on"]["nullable"]) == ("date", True)
    assert json_schema(Refund)["description"] == "Decide on a refund."


def test_pydantic_form_comes_from_its_own_schema() -> None:
    fields = {f["name"]: f for f in form_fields(RefundModel)}
    assert fields["amount"]["description"] == "How much to pay back"
    assert fields["channel"]["options"] == ["card", "voucher"]
    assert (fields["at"]["input"], fields["at"]["nullable"]) == ("time", True)
    assert json_schema(RefundModel)["properties"]["amount"]["exclusiveMinimum"] == 0


def test_dataclass_answer_becomes_an_instance(validator: str) -> None:
    value = validate_answer(
        Refund, {"approve": True, "amount": 12, "priority": "high", "pay_on": "2026-12-24"}
    )
    assert value == Refund(approve=True, amount=12.0, priority=Priority.HIGH, pay_on=dt.date(2026, 12, 24))
    assert answer_json(Refund, value) == {
        "approve": True,
        "amount": 12.0,
        "reason": "",
        "channel": "card",
        "priority": "high",
        "pay_on": "2026-12-24",
    }


def test_dataclass_answer_with_wrong_fields_names_each(validator: str) -> None:
    with pytest.raises(InvalidAnswer) as caught:
        validate_answer(Refund, {"approve": "perhaps", "channel": "cash"})
    fields = [field for field, _ in caught.value.errors]
    assert fields == ["approve", "amount", "channel"]
    assert dict(caught.value.errors)["amount"] == "Field required"


def test_unknown_field_is_refused_not_dropped(validator: str) -> None:
    with pytest.raises(InvalidAnswer, match=r"^`approved`: Unknown field; the fields are 'approve', "):
        validate_answer(Refund, {"approved": True, "amount": 1})


def test_typeddict_answer_is_a_checked_dict(validator: str) -> None:
    assert validate_answer(RefundDict, {"approve": False, "count": 3}) == {"approve": False, "count": 3}
    with pytest.raises(InvalidAnswer) as caught:
        validate_answer(RefundDict, {"approve": 1})
    assert [field for field, _ in caught.value.errors] == ["approve", "count"]


def test_answer_that_is_not_an_object_is_refused(validator: str) -> None:
    with pytest.raises(InvalidAnswer, match=r"^An answer must be a JSON object of fields, got 'yes'\.$"):
        validate_answer(Refund, "yes")


def test_pydantic_answer_is_validated_by_the_model() -> None:
    assert validate_answer(RefundModel, {"approve": True, "amount": 3, "at": "10:30"}) == RefundModel(
        approve=True, amount=3.0, at=dt.time(10, 30)
    )
    with pytest.raises(InvalidAnswer) as caught:
        validate_answer(RefundModel, {"approve": True, "amount": -5})
    assert caught.value.errors == (("amount", "Input should be greater than 0"),)


def test_an_instance_is_taken_as_it_is() -> None:
    refund = Refund(approve=True, amount=1.0)
    assert validate_answer(Refund, refund) is refund
