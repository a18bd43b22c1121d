"""Typed answers of ``workflow.ask``: what a question's model accepts, and the form it gets.

Pure functions of a model class (a dataclass, a pydantic model or a ``TypedDict``): its
JSON Schema, the form fields the widget draws from that schema, validation of an answer
into an instance with one message per wrong field, an instance as JSON, and the
:class:`Answer` that carries a valid one (with who gave it) to its ask step. pydantic
does the work when it is installed; without it, dataclasses and TypedDicts get a plain
type check. No I/O, no event loop, no store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

ModelKind = Literal["pydantic", "dataclass", "typeddict"]

FieldError = tuple[str, str]
"""``(field, message)``: the field's name (dotted for nested ones; ``""``: the whole answer)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A validated answer on its way through the inbox to the ask step waiting for it.

    Attributes:
        value: The answer: an instance of the question's model.
        answered_by: Who answered: ``notebook:<user>`` from the notebook or
            ``send_event``, ``http`` or ``http:<signature rule>`` (a verified sender)
            from the HTTP inbox.
        answered_at: When (epoch seconds).
    """

    value: object
    answered_by: str | None
    answered_at: float

    def readable(self) -> str:
        """The answer, who gave it and when, as JSON: the inbox's readable form of it.

        The same shape as an ask step's checkpoint (see :func:`readable_answer`).
        """
        return readable_answer(answer_json(type(self.value), self.value), self.answered_by, self.answered_at)


def readable_answer(answer: object, answered_by: str | None, answered_at: float | None) -> str:
    """How the store shows an answer (``payload`` of ``events`` and ``inbox_events``).

    ``{"answer": {...}, "answered_by": "notebook:alice", "answered_at": "2026-...Z"}``;
    ``answer`` is the answer as plain JSON values (:func:`answer_json`).
    """
    at = None if answered_at is None else dt.datetime.fromtimestamp(answered_at, dt.UTC).isoformat()
    return json.dumps({"answer": answer, "answered_by": answered_by, "answered_at": at}, default=repr)


class InvalidAnswer(ValueError):
    """An answer its model refuses; ``errors`` says which fields are wrong and why.

    Callers turn it into ``evkit.AnswerError`` (which names the run and the key).
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__(
            "; ".join(f"`{field}`: {message}" if field else message for field, message in self.errors)
        )


def model_kind(model: object) -> ModelKind:
    """Which kind of model ``model`` is.

    Raises:
        TypeError: ``model`` is not a dataclass, a pydantic model or a TypedDict class.
    """
    if isinstance(model, type):
        if _is_pydantic_model(model):
            return "pydantic"
        if dataclasses.is_dataclass(model):
            return "dataclass"
        if typing.is_typeddict(model):
            return "typeddict"
    raise TypeError(
        f"The model of a question must be a dataclass, a pydantic model or a TypedDict class, "
        f"got {model!r}. Define e.g. `@dataclass class Approval: approve: bool` and pass `Approval`."
    )


def _is_pydantic_model(model: type) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:
        return False
    return issubclass(model, BaseModel)


# ---------------------------------------------------------------------- JSON Schema


@functools.lru_cache(maxsize=256)
def json_schema(model: type) -> Mapping[str, Any]:
    """The JSON Schema of answers to ``model`` (an object schema).

    A pydantic model's own schema; for a dataclass or a TypedDict, one derived here from
    its type hints (the same with or without pydantic), with a field's description taken
    from ``field(metadata={"description": ...})`` or ``Annotated[T, "description"]``.

    Raises:
        TypeError: ``model`` is not a model (see :func:`model_kind`).
    """
    kind = model_kind(model)
    if kind == "pydantic":
        return typing.cast("Mapping[str, Any]", model.model_json_schema())  # type: ignore[attr-defined]
    properties: dict[str, object] = {}
    required: list[str] = []
    for spec in _plain_fields(model):
        schema = _type_schema(spec.hint)
        prop: dict[str, object] = {"title": _title(spec.name), **schema}
        if spec.description:
            prop["description"] = spec.description
        if spec.default is not _MISSING:
            prop["default"] = _jsonable(spec.default)
        if spec.required:
            required.append(spec.name)
        properties[spec.name] = prop
    result: dict[str, object] = {"title": model.__name__, "type": "object", "properties": properties}
    if required:
        result["required"] = required
    doc = _own_doc(model)
    if doc:
        result["description"] = doc
    return result


def _title(name: str) -> str:
    return name.replace("_", " ").strip().title()


def _own_doc(model: type) -> str | None:
    doc = model.__doc__
    # dataclasses write their signature as __doc__ when the class has none: not a description.
    if not doc or (dataclasses.is_dataclass(model) and doc.startswith(f"{model.__name__}(")):
        return None
    return " ".join(doc.split())


def _type_schema(hint: object) -> dict[str, object]:
    hint = _strip_annotated(hint)
    origin = typing.get_origin(hint)
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if origin is Literal:
        values = list(typing.get_args(hint))
        return {"enum": values}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint], "title": hint.__name__}
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        return {"anyOf": [_type_schema(m) if m is not type(None) else {"type": "null"} for m in members]}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        args = typing.get_args(hint)
        return {"type": "array", "items": _type_schema(args[0])} if args else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    return {}


_SCALARS: dict[object, Mapping[str, object]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    dt.time: {"type": "string", "format": "time"},
    type(None): {"type": "null"},
}


def _strip_annotated(hint: object) -> object:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


# ---------------------------------------------------------------------- the form


def form_fields(model: type) -> list[dict[str, object]]:
    """The inputs of the form that answers ``model``, in field order, from its JSON Schema.

    Each is ``{"name", "label", "input", "required", "nullable"}`` plus ``"default"``,
    ``"description"`` and ``"options"`` (the values of a dropdown) when it has them.
    ``input`` is ``"checkbox"``, ``"select"``, ``"integer"``, ``"number"``, ``"date"``,
    ``"time"``, ``"datetime"``, ``"text"``, or ``"json"`` (any other value, typed as JSON).

    Raises:
        TypeError: ``model`` is not a model (see :func:`model_kind`).
    """
    schema = json_schema(model)
    defs = typing.cast("Mapping[str, Any]", schema.get("$defs", {}))
    required = set(typing.cast("Sequence[str]", schema.get("required", ())))
    fields = []
    for name, raw in typing.cast("Mapping[str, Mapping[str, Any]]", schema.get("properties", {})).items():
        prop = _resolve(raw, defs)
        nullable = False
        if "anyOf" in prop:
            members = [_resolve(m, defs) for m in prop["anyOf"]]
            others = [m for m in members if m.get("type") != "null"]
            nullable = len(others) < len(members)
            prop = {**prop, **others[0]} if len(others) == 1 else {**prop, "type": None}
            prop.pop("anyOf", None)
        field: dict[str, object] = {
            "name": name,
            "label": prop.get("title") or _title(name),
            "input": _input_of(prop),
            "required": name in required,
            "nullable": nullable,
        }
        if "enum" in prop:
            field["options"] = list(prop["enum"])
        elif "const" in prop:
            field["options"] = [prop["const"]]
        for key in ("default", "description"):
            if key in raw or key in prop:
                field[key] = raw.get(key, prop.get(key))
        fields.append(field)
    return fields


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"), {})
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return dict(schema)


def _input_of(prop: Mapping[str, Any]) -> str:
    if "enum" in prop or "const" in prop:
        return "select"
    kind = prop.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return str(kind)
    if kind == "string":
        return {"date": "date", "time": "time", "date-time": "datetime"}.get(prop.get("format", ""), "text")
    return "json"


# ---------------------------------------------------------------------- validation


def validate_answer(model: type, data: object) -> object:
    """``data`` (JSON-like: what a form, ``send_event`` or an HTTP body gives) as an instance.

    pydantic validates when it is installed (its lax mode: ``"3"`` is a fine ``int``);
    a field the model does not have is refused for dataclasses and TypedDicts (it would
    be lost), and for pydantic models as their ``extra`` setting says. An instance of
    the model is taken as it is.

    Returns:
        An instance of ``model`` (a plain dict for a TypedDict).

    Raises:
        InvalidAnswer: The answer does not fit; ``errors`` names each wrong field.
        TypeError: ``model`` is not a model (see :func:`model_kind`).
    """
    kind = model_kind(model)
    if kind != "typeddict" and isinstance(data, model):
        return data
    if kind != "pydantic":
        _refuse_unknown_fields(model, data)
    adapter = _adapter(model)
    if adapter is None:
        return _plain_validate(model, data)
    from pydantic import ValidationError

    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidAnswer([(_loc(error["loc"]), error["msg"]) for error in exc.errors()]) from None


def prepare_validator(model: type) -> None:
    """Build ``model``'s validator now, so that validating its first answer does no I/O.

    The first pydantic validator of a process reads the installed plugins' metadata from
    disk: call this off the event loop (``workflow.ask`` does, as it defines the step).

    Raises:
        TypeError: ``model`` is not a model (see :func:`model_kind`).
    """
    model_kind(model)
    _adapter(model)


def _loc(loc: Sequence[object]) -> str:
    return ".".join(str(part) for part in loc)


@functools.lru_cache(maxsize=256)
def _adapter(model: type) -> Any:
    """Pydantic's ``TypeAdapter`` of ``model``, or ``None`` (no pydantic, or it cannot take it).

    pydantic refuses ``typing.TypedDict`` before Python 3.12 (it wants
    ``typing_extensions.TypedDict``): such models get the plain check.
    """
    try:
        from pydantic import PydanticUserError, TypeAdapter
    except ImportError:
        return None
    try:
        return TypeAdapter(model)
    except PydanticUserError:
        return None


def _refuse_unknown_fields(model: type, data: object) -> None:
    if not isinstance(data, Mapping):
        raise InvalidAnswer([("", f"An answer must be a JSON object of fields, got {_short(data)}.")])
    known = [spec.name for spec in _plain_fields(model)]
    unknown = [name for name in data if name not in known]
    if unknown:
        raise InvalidAnswer(
            [(str(name), f"Unknown field; the fields are {', '.join(map(repr, known))}.") for name in unknown]
        )


_MISSING: Any = dataclasses.MISSING


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _FieldSpec:
    name: str
    hint: object
    required: bool
    default: object = None  # _MISSING when required (a dataclass default cannot be MISSING)
    description: str | None = None


@functools.lru_cache(maxsize=256)
def _plain_fields(model: type) -> tuple[_FieldSpec, ...]:
    """The fields of a dataclass or TypedDict, once per model (``get_type_hints`` is slow)."""
    hints = typing.get_type_hints(model, include_extras=True)
    specs = []
    if dataclasses.is_dataclass(model):
        for field in dataclasses.fields(model):
            if not field.init:
                continue
            hint = hints.get(field.name, object)
            default = field.default
            if default is _MISSING and field.default_factory is not _MISSING:
                default = field.default_factory()  # type: ignore[operator]  # checked just above
            description = field.metadata.get("description") or _annotated_doc(hint)
            specs.append(
                _FieldSpec(
                    name=field.name,
                    hint=hint,
                    required=default is _MISSING,
                    default=default,
                    description=description,
                )
            )
        return tuple(specs)
    required_keys = typing.cast("frozenset[str]", getattr(model, "__required_keys__", frozenset()))
    for name, hint in hints.items():
        specs.append(
            _FieldSpec(
                name=name,
                hint=hint,
                required=name in required_keys,
                default=_MISSING,
                description=_annotated_doc(hint),
            )
        )
    return tuple(specs)


def _annotated_doc(hint: object) -> str | None:
    if typing.get_origin(hint) is typing.Annotated:
        return next((m for m in typing.get_args(hint)[1:] if isinstance(m, str)), None)
    return None


def _plain_validate(model: type, data: object) -> object:
    assert isinstance(data, Mapping)  # _refuse_unknown_fields checked it
    values: dict[str, object] = {}
    errors: list[FieldError] = []
    for spec in _plain_fields(model):
        if spec.name not in data:
            if spec.required:
                errors.append((spec.name, "Field required"))
            continue
        try:
            values[spec.name] = _coerce(spec.hint, data[spec.name])
        except InvalidAnswer as exc:
            errors.extend(
                (f"{spec.name}.{field}" if field else spec.name, message) for field, message in exc.errors
            )
    if errors:
        raise InvalidAnswer(errors)
    if dataclasses.is_dataclass(model):
        return model(**values)
    return values


def _coerce(hint: object, value: object) -> object:
    """``value`` as ``hint`` wants it (ISO text becomes a date, a value its Enum member)."""
    hint = _strip_annotated(hint)
    origin = typing.get_origin(hint)
    if hint in (object, Any):
        return value
    if hint is type(None):
        if value is None:
            return None
        raise InvalidAnswer([("", f"Input should be null, got {_short(value)}")])
    if origin in (typing.Union, types.UnionType):
        problems = []
        for member in typing.get_args(hint):
            try:
                return _coerce(member, value)
            except InvalidAnswer as exc:
                problems.append(str(exc))
        raise InvalidAnswer([("", " or ".join(problems))])
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise InvalidAnswer([("", f"Input should be {_one_of(allowed)}, got {_short(value)}")])
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        try:
            return hint(value)
        except ValueError:
            allowed = tuple(member.value for member in hint)
            raise InvalidAnswer([("", f"Input should be {_one_of(allowed)}, got {_short(value)}")]) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InvalidAnswer([("", f"Input should be a valid boolean, got {_short(value)}")])
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidAnswer([("", f"Input should be a valid integer, got {_short(value)}")])
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise InvalidAnswer([("", f"Input should be a valid number, got {_short(value)}")])
    if hint is str:
        if isinstance(value, str):
            return value
        raise InvalidAnswer([("", f"Input should be a valid string, got {_short(value)}")])
    if hint in (dt.datetime, dt.date, dt.time):
        return _coerce_time(typing.cast("type", hint), value)
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, list | tuple):
            raise InvalidAnswer([("", f"Input should be a valid list, got {_short(value)}")])
        args = typing.get_args(hint)
        items = [_coerce(args[0], item) for item in value] if args else list(value)
        return typing.cast("Any", origin)(items)
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or typing.is_typeddict(hint)):
        _refuse_unknown_fields(hint, value)
        return _plain_validate(hint, value)
    if isinstance(hint, type) and origin is None and not isinstance(value, hint):
        raise InvalidAnswer([("", f"Input should be a {hint.__qualname__}, got {_short(value)}")])
    return value


def _coerce_time(kind: type, value: object) -> object:
    name = {dt.datetime: "datetime", dt.date: "date", dt.time: "time"}[kind]
    if isinstance(value, kind) and (kind is not dt.date or not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str):
        try:
            return typing.cast("Any", kind).fromisoformat(value)
        except ValueError:
            pass
    raise InvalidAnswer([("", f"Input should be a valid {name} in ISO format, got {_short(value)}")])


def _one_of(allowed: Sequence[object]) -> str:
    texts = [repr(a) for a in allowed]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- output


def answer_json(model: type, value: object) -> object:
    """An answer (an instance of ``model``) as plain JSON values: what the store shows."""
    adapter = _adapter(model)
    if adapter is not None:
        try:
            return adapter.dump_python(value, mode="json")
        except Exception:  # a value pydantic cannot dump: the plain conversion below
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return _jsonable(value)


def _jsonable(value: object) -> object:
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
