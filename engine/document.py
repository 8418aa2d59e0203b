"""The execution document as pydantic models: `Execution`, its `Phase`s and its `DataUpdates`,
each field described as the platform's page describes it.

The engine still builds and writes documents as plain dicts, and the API still serves them as
the JSON the store holds: nothing here runs on the trigger's or the reads' path. The models
are the one place that names the document's fields (`engine.schema` reads them from here) and
describes them: the tests validate every document the engine writes against them, and the
API's OpenAPI description declares them (`json_schemas`).

A model holds exactly what the engine writes (`extra="forbid"`: a field the engine starts to
write fails the tests until it is declared and described here), and a field that the engine
leaves out until it has a value (`end`, `loaderMessage`, `data`) is absent, never null.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from procexec.engine.domain import PhaseStatus, Status, Trigger

#: a timestamp as the engine writes it (`engine.timeutil.iso_ms`): ISO 8601, UTC, milliseconds
Timestamp = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"),
    Field(json_schema_extra={"format": "date-time"}),
]
#: the ids a run updated, by the date they were updated for
DatedIds = dict[str, list[str]]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _absent_not_null(cls, value: Any) -> Any:
        """A field without a value is left out of a document, never written as null."""
        if value is None:
            raise ValueError("a field without a value is left out, never null")
        return value


class Phase(_Document):
    """One workflow phase of an execution, as it runs and once it has ended."""

    name: str = Field(description="The name of the phase (EXTRACT, TRANSFORM, SEND, LOAD, …)")
    start: Timestamp = Field(description="When the phase began")
    status: PhaseStatus = Field(description="The status of the phase: running, success or failed")
    message: str = Field(description="The phase's latest information message")
    log: list[str] = Field(
        description="The phase's log lines, oldest first, each stamped with its time and level; "
        "a long log keeps its first and its last lines, with one line between them that "
        "counts the lines dropped"
    )
    end: Timestamp | None = Field(
        default=None, description="When the phase ended; absent while it runs"
    )


class DataUpdates(_Document):
    """The data items an ETL run updated."""

    curves: DatedIds = Field(description="The ids of the curves updated, by date")
    series: DatedIds = Field(description="The ids of the time series updated, by date")


class Execution(_Document):
    """The execution log of one run of a process."""

    id: str = Field(alias="_id", description="The execution's unique id")
    service: str = Field(description="The name of the service of the process that was run")
    name: str = Field(description="The name of the process")
    environment: str = Field(description="The data environment the process ran in")
    trigger: Trigger = Field(
        description="How the process was triggered: scheduled, manual or subscription"
    )
    status: Status = Field(
        description="The execution's status: triggered, running, waiting or retrying (between "
        "the attempts of a phase), then success, warning (succeeded with warnings) or failed"
    )
    message: str = Field(description="The execution's latest information message")
    reason: str = Field(description="Why the process was run")
    start: Timestamp = Field(description="When the execution was triggered")
    run_as: str = Field(
        alias="runAs", description="The user whose credentials the process ran with"
    )
    phases: list[Phase] = Field(description="The workflow phases of the execution, as they ran")
    end: Timestamp | None = Field(
        default=None, description="When the execution ended; absent until it has"
    )
    loader_message: str | None = Field(
        default=None,
        alias="loaderMessage",
        description="For an ETL process, the status message of its loader (the LOAD phase); "
        "absent when the run reported none",
    )
    data: DataUpdates | None = Field(
        default=None,
        description="For an ETL process, the data items the run updated; absent when it "
        "updated none",
    )


def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model as a document holds them (`_id`, `runAs`, …), in order."""
    return tuple(field.alias or name for name, field in model.model_fields.items())


class _DocumentSchema(GenerateJsonSchema):
    """JSON Schema of the models as documents hold them: a field without a value is absent,
    never null, so an optional field is described by its type alone, without a default."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # the field's name says it: `runAs`, not "Runas"

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default") is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


#: what `json_schemas(projected=True)` says of an execution beside the model's own docstring
PROJECTED_NOTE = (
    " A whole document holds every field but `end` (until the run ends), `loaderMessage` and "
    "`data` (only for runs that report them); a read's `_project` may leave out any field but "
    "`_id`, so this schema requires `_id` alone."
)


def json_schemas(
    ref_template: str = "#/components/schemas/{model}", *, projected: bool = False
) -> dict[str, JsonSchemaValue]:
    """The JSON Schemas of `Execution`, `Phase` and `DataUpdates` by name, referring to one
    another through `ref_template` (OpenAPI's components by default).

    `projected`: as the API's reads answer them, where `_project` may pick any fields: every
    field of every model optional but the execution's `_id`.
    """
    schema = Execution.model_json_schema(
        by_alias=True, ref_template=ref_template, schema_generator=_DocumentSchema
    )
    schemas: dict[str, JsonSchemaValue] = copy.deepcopy(schema.pop("$defs", {}))
    schemas[Execution.__name__] = schema
    if projected:
        for name, described in schemas.items():
            if "properties" in described:
                described["required"] = ["_id"] if name == Execution.__name__ else []
        schema["description"] += PROJECTED_NOTE
    return schemas
