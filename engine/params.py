"""A process's parameters: a pydantic model, declared (`params=`) or made from plain `defaults`,
against which every trigger's body is checked before anything is recorded.

A body is validated in pydantic's default (lax) mode: `"2"` for a number is taken as 2, `1.5`
for an integer is refused, and a name the process does not take is refused, whatever the
model's own `extra` setting (unless it is `allow`). What is recorded is the parameters'
JSON form, defaults filled in and secrets (`SecretStr`) in clear, for the worker, which
validates it again and hands the phases the model (or, for plain defaults, a dict).
Wherever parameters are shown, `Parameters.shown` masks the secrets.

The service adds keys of its own to the runs it makes (`RESERVED`): `subscription` (the
fulfilled subscription of a subscription run) and `upstream` (the run that caused it). They
are kept beside the parameters, never validated against the model, offered to phases as
`ctx.subscription` and `ctx.upstream` (and, for plain defaults, in `ctx.params` as before);
a caller's body may not set them, and a process may not declare them.
"""

from __future__ import annotations

import difflib
import keyword
import types
import typing
from collections import abc
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError
from pydantic import create_model as _create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import DEFAULT_REF_TEMPLATE
from pydantic_core import to_jsonable_python

from procexec.engine.errors import EXCERPT_CHARS, BadRequest, excerpt

#: the keys the service adds to the parameters of the runs it makes
RESERVED = ("subscription", "upstream")
#: the most validation errors one message names (the rest are counted)
MAX_ERRORS_SHOWN = 5


class Parameters:
    """The parameters of process `owner`: `model` if declared, else a model of `defaults`
    (each name any JSON value, its default the given one)."""

    def __init__(
        self, owner: str, model: type[BaseModel] | None, defaults: Mapping[str, Any]
    ) -> None:
        if model is not None and defaults:
            raise ValueError(f"process {owner}: give params= or defaults=, not both")
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ValueError(f"process {owner}: params must be a pydantic model class")
        self.owner = owner
        #: the process declared a model: its phases receive the model, not a dict
        self.declared = model is not None
        self.model: type[BaseModel] = model if model is not None else _of_defaults(owner, defaults)
        self.extra_allowed = self.model.model_config.get("extra") == "allow"
        self.names: dict[str, str] = _accepted_names(self.model)
        #: the names whose values are secret: never echoed in an error
        self.secrets = frozenset(
            key for key, name in self.names.items() if _secret(self.model.model_fields[name])
        )
        #: the names whose type holds a model, whose own unknown names a body may give
        self.nested = {
            key: self.model.model_fields[name].annotation
            for key, name in self.names.items()
            if self.declared and _nested_models(self.model.model_fields[name].annotation, set())
        }
        reserved = sorted(set(self.names) & set(RESERVED))
        if reserved:
            raise ValueError(
                f"process {owner}: parameter {reserved[0]!r} is reserved for the service "
                f"(it sets {', '.join(RESERVED)} on the runs it makes)"
            )

    def required(self) -> list[str]:
        """The names that have no default: a run made by the service (scheduled, subscription,
        follower) could not give them."""
        return [
            field.alias or name
            for name, field in self.model.model_fields.items()
            if field.is_required()
        ]

    def check_defaults(self) -> None:
        """A `ValueError` naming each default its own field's type refuses (pydantic does not
        validate defaults by itself); the fields without one are left to the trigger."""
        defaults = {
            field.alias or name: field.get_default(call_default_factory=True)
            for name, field in self.model.model_fields.items()
            if not field.is_required()
        }
        try:
            self.model.model_validate(defaults)
        except ValidationError as exc:
            wrong = [
                error
                for error in exc.errors(include_url=False)
                if not (error["type"] == "missing" and len(error["loc"]) == 1)
            ]
            if wrong:
                refused = ValidationError.from_exception_data(exc.title, wrong)  # type: ignore[arg-type]
                raise ValueError(_joined(_problems(refused, "defaults", self.secrets))) from None

    def validate(
        self, body: Mapping[str, Any] | None, *, added: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The parameters to record for a trigger's `body` (JSON form, defaults filled in,
        secrets in clear) with the service's `added` keys beside them; a `BadRequest` naming
        every field that is wrong otherwise."""
        body = dict(body or {})
        problems = []
        for key in body:
            if key in RESERVED:
                problems.append(
                    f"body.{excerpt(key)}: reserved; the service sets it on the runs it makes"
                )
            elif key not in self.names and not self.extra_allowed:
                problems.append(f"body.{excerpt(key)}: unknown parameter{self._close(key)}")
        if self.nested:
            problems += self._unknown_inside(body)
        if problems:  # and what is wrong with the names it does take, in the same message
            known = {key: value for key, value in body.items() if key in self.names}
            try:
                self.model.model_validate(known)
            except ValidationError as exc:
                problems += _problems(exc, "body", self.secrets)
            raise BadRequest(f"{_joined(problems)}; {self._takes()}")
        instance = self._model(body, "body")
        recorded = revealed(instance)
        for key, value in (added or {}).items():
            if key not in RESERVED:
                raise ValueError(f"{key!r} is not one of the service's keys {RESERVED}")
            recorded[key] = value
        return recorded

    def arguments(self, recorded: Mapping[str, Any]) -> Any:
        """What the phases receive for recorded parameters: the declared model, validated
        again (a `BadRequest` if the definition changed since), or for plain defaults the dict
        as recorded, the service's keys included."""
        if not self.declared:
            return dict(recorded)
        own = {key: value for key, value in recorded.items() if key not in RESERVED}
        return self._model(own, "parameters")

    def shown(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """Recorded parameters as they may be shown: secrets masked (`**********`)."""
        own = {key: value for key, value in recorded.items() if key not in RESERVED}
        try:
            model = self.model.model_validate(own)
        except ValidationError:  # recorded under another definition: no value shown
            return {key: "**********" for key in recorded}
        shown: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        shown.update((key, recorded[key]) for key in RESERVED if key in recorded)
        return shown

    def defaults(self) -> dict[str, Any]:
        """The parameters' defaults as they may be shown (secrets masked); those without one
        are left out."""
        shown = {}
        for name, field in self.model.model_fields.items():
            if field.is_required():
                continue
            value = field.get_default(call_default_factory=True)
            shown[field.alias or name] = to_jsonable_python(value, fallback=lambda _: "**********")
        return shown

    def schema(self, ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
        """The JSON Schema of the parameters (what the process list and /docs show); the
        models it refers to under `$defs`, referred to by `ref_template`."""
        schema = self.model.model_json_schema(by_alias=True, ref_template=ref_template)
        if not self.extra_allowed:
            schema["additionalProperties"] = False
        closed = _nested_models(self.model, set())  # refusing unknown names as well
        for name, nested in schema.get("$defs", {}).items():
            if name in closed and "additionalProperties" not in nested:
                nested["additionalProperties"] = False
        return schema

    def _model(self, values: Mapping[str, Any], where: str) -> BaseModel:
        try:
            return self.model.model_validate(values)
        except ValidationError as exc:
            raise BadRequest(_joined(_problems(exc, where, self.secrets))) from None

    def _unknown_inside(self, body: Mapping[str, Any]) -> list[str]:
        """The names a body gives inside its parameters' nested models that those do not take
        (pydantic ignores them by default), as a top-level unknown name is refused."""
        return [
            problem
            for key, annotation in self.nested.items()
            if key in body
            for problem in _unknown_in(annotation, body[key], f"body.{key}")
        ]

    def _close(self, key: str) -> str:
        close = difflib.get_close_matches(key, list(self.names), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def _takes(self) -> str:
        takes = sorted(self.names)
        if not takes:
            return f"{self.owner} takes no parameters"
        return f"{self.owner} takes " + ", ".join(takes[:20]) + (", …" if len(takes) > 20 else "")


def _of_defaults(owner: str, defaults: Mapping[str, Any]) -> type[BaseModel]:
    """A model of plain defaults: each name takes any value; an unknown name is refused."""
    fields: dict[str, Any] = {}
    for number, (key, value) in enumerate(defaults.items()):
        if not isinstance(key, str):
            raise ValueError(f"process {owner}: parameter names must be strings, got {key!r}")
        attribute = key if key.isidentifier() and not keyword.iskeyword(key) else ""
        if not attribute or key.startswith("_") or key in dir(BaseModel):
            attribute = f"p{number}_"
        fields[attribute] = (Any, Field(default=value, alias=key))
    model: type[BaseModel] = _create_model(
        f"{owner}Parameters",
        __config__=ConfigDict(extra="forbid", populate_by_name=False),
        **fields,
    )
    return model


def _accepted_names(model: type[BaseModel]) -> dict[str, str]:
    """The names a body may use, each to its field: aliases, and the fields' own names where
    the model takes them."""
    by_name = bool(model.model_config.get("populate_by_name"))
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names[alias or name] = name
        if by_name or not alias:
            names[name] = name
    return names


def _unknown_in(annotation: Any, given: Any, path: str) -> list[str]:
    """The names `given` (a body's value for a field of type `annotation`) holds that the
    models of that type do not take, unless one allows extra names; each at its path. A union
    of several models is left alone (which one pydantic picks is its own)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(given, Mapping):
            return []
        allowed = annotation.model_config.get("extra") == "allow"
        names = _accepted_names(annotation)
        problems = []
        for key, inner in given.items():
            where = f"{path}.{key}"
            if key in names:
                inner_type = annotation.model_fields[names[key]].annotation
                problems += _unknown_in(inner_type, inner, where)
            elif not allowed:
                close = difflib.get_close_matches(str(key), list(names), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{excerpt(where)}: unknown field{hint}")
        return problems
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unknown_in(arguments[0], given, path)
    if origin in (typing.Union, types.UnionType):
        members = [member for member in arguments if member is not type(None)]
        return _unknown_in(members[0], given, path) if len(members) == 1 else []
    if origin in (list, set, frozenset, abc.Sequence) and isinstance(given, list) and arguments:
        return [
            p
            for n, item in enumerate(given)
            for p in _unknown_in(arguments[0], item, f"{path}.{n}")
        ]
    if origin in (dict, abc.Mapping) and isinstance(given, Mapping) and len(arguments) == 2:
        return [
            p for k, item in given.items() for p in _unknown_in(arguments[1], item, f"{path}.{k}")
        ]
    return []


def _nested_models(annotation: Any, seen: set[int]) -> set[str]:
    """The class names of the models under `annotation` (a model's fields, at any depth) that
    do not allow extra names: `_unknown_in` refuses those a body gives them."""
    if id(annotation) in seen:
        return set()
    seen.add(id(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = {annotation.__name__} if annotation.model_config.get("extra") != "allow" else set()
        for field in annotation.model_fields.values():
            found |= _nested_models(field.annotation, seen)
        return found
    return set().union(
        *(_nested_models(argument, seen) for argument in typing.get_args(annotation))
    )


def _secret(field: FieldInfo) -> bool:
    """Whether a field's type holds a secret anywhere (`SecretStr`, `SecretStr | None`, a
    model with one among its fields, a list of such models, …): no value under it is echoed."""
    return _holds_secret(field.annotation, frozenset())


def _holds_secret(annotation: Any, seen: frozenset[int]) -> bool:
    if any(name in repr(annotation) for name in ("SecretStr", "SecretBytes", "Secret[")):
        return True
    if id(annotation) in seen:  # a model that refers to itself
        return False
    seen |= {id(annotation)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_secret(f.annotation, seen) for f in annotation.model_fields.values())
    return any(_holds_secret(argument, seen) for argument in typing.get_args(annotation))


def _problems(exc: ValidationError, where: str, secrets: frozenset[str]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (where, *error["loc"]))
        message = excerpt(error["msg"], 2 * EXCERPT_CHARS)
        if error["type"] == "missing":
            problems.append(f"{excerpt(path)}: required")
            continue
        given = error.get("input")
        hidden = isinstance(given, dict | list) or (error["loc"] and error["loc"][0] in secrets)
        shown = "" if hidden else f" (got {excerpt(repr(given))})"
        problems.append(f"{excerpt(path)}: {message}{shown}")
    return problems


def _joined(problems: list[str]) -> str:
    shown = problems[:MAX_ERRORS_SHOWN]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def revealed(instance: BaseModel) -> dict[str, Any]:
    """A parameters model `instance` in its JSON form, by alias, secrets in clear: what is
    recorded for the worker (or given as a body for the same parameters), never shown."""
    dumped: dict[str, Any] = to_jsonable_python(_revealed(instance.model_dump(by_alias=True)))
    return dumped


def _revealed(value: Any) -> Any:
    """`value` with its secrets in clear (to be recorded for the worker, never shown)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_revealed(item) for item in value]
    return value
