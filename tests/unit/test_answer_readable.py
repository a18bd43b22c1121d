"""How the store shows an answer on its way to an ask step (``Answer.readable``): JSON
with the answer's fields, who sent it and when, for each kind of model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import TypedDict

import pydantic

from evkit.answers import Answer

AT = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC).timestamp()


@dataclasses.dataclass
class Ship:
    on: dt.date
    boxes: int = 1


class Carrier(pydantic.BaseModel):
    name: str


class Note(TypedDict):
    text: str


def test_an_answer_reads_as_json_with_who_sent_it_and_when() -> None:
    for value, answer in [
        (Ship(on=dt.date(2026, 12, 24)), {"on": "2026-12-24", "boxes": 1}),
        (Carrier(name="dhl"), {"name": "dhl"}),
        (Note(text="hi"), {"text": "hi"}),
    ]:
        text = Answer(value=value, answered_by="http:github", answered_at=AT).readable()
        assert json.loads(text) == {
            "answer": answer,
            "answered_by": "http:github",
            "answered_at": "2026-12-07T12:00:00+00:00",
        }
