"""The progress envelope and the two wire messages every sink receives (pydantic v2).

One vocabulary from worker to sink to collector to database: a :class:`Heartbeat` (status, liveness,
and the envelope when the whole message stays within ``heartbeat_limit``) and a :class:`ProgressUpdate`
(the envelope alone, when it did not fit). Both are versioned with ``"v": 1``; fields added since
(a heartbeat's ``resume``) are optional, unknown fields are ignored on read and an unknown unit string
from a newer writer is kept, so old readers keep working.

Strict: a message is accepted if and only if it validates against the published JSON Schema
(``jobprogress schema``, docs/wire/v1.schema.json, built from these models by ``_wire_schema``). No
coercion: a count is a JSON integer (``5`` or ``5.0``, never ``true`` or ``"5"``), a rate a finite
number, a timestamp an RFC 3339 string, a flag a JSON boolean.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    TypeAdapter,
    WithJsonSchema,
)

from ._forklock import ForkGate
from ._states import MAX_COUNT, MAX_KIND_LENGTH, MAX_UNIT_LENGTH, MAX_WIRE_ERROR_LENGTH
from ._validate import UNITS, check_id, check_payload, check_text

__all__ = [
    "PROTOCOL_VERSION",
    "Heartbeat",
    "JobProgressEnvelope",
    "JobStatus",
    "Message",
    "ProgressUnit",
    "ProgressUpdate",
    "dump_message",
    "parse_message",
    "parse_messages",
]

PROTOCOL_VERSION = 1

M = TypeVar("M", bound=BaseModel)

PayloadValue = str | int | float | bool | None
"""What a payload field may hold: flat metrics only."""


class ProgressUnit(str, Enum):
    """What a job counts. Readers keep unit strings they do not know as plain ``str``."""

    FILES = "files"
    ROWS = "rows"
    BYTES = "bytes"
    RECORDS = "records"
    CHUNKS = "chunks"
    ITERATIONS = "iterations"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


assert tuple(u.value for u in ProgressUnit) == UNITS


class JobStatus(str, Enum):
    """Lifecycle of one tracker run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def _unit(value: object) -> ProgressUnit | str:
    if isinstance(value, ProgressUnit):
        return value
    text = check_text("unit", value, MAX_UNIT_LENGTH)
    try:
        return ProgressUnit(text)
    except ValueError:
        return text  # a newer writer's unit: keep it rather than fail


def _integral(value: object) -> object:
    # JSON has one number type: 5.0 is the integer five (as JSON Schema says); 5.5, true and "5" are not.
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


TIMESTAMP_PATTERN: Final = (
    r"^(197[1-9]|19[89][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""RFC 3339 with an upper-case ``T``, seconds, at most 6 fraction digits and a zone; years 1971-8999,
so that no offset can move it outside 1970-9000 (what the store keeps)."""
_TIMESTAMP: Final = re.compile(TIMESTAMP_PATTERN)


def _timestamp(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a timestamp is an RFC 3339 string, not {type(value).__name__}")
    if not _TIMESTAMP.match(value):
        raise ValueError(
            "a timestamp is an RFC 3339 string such as 2026-01-31T12:00:00.5Z, with seconds, a zone "
            "(Z or +hh:mm) and a year from 1971 to 8999"
        )
    return value


_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def _utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:  # an offset that pushes it past year 1 or 9999
        raise ValueError("timestamp is out of range") from None
    if not _EARLIEST <= utc < _LATEST:
        # Stored as POSIX seconds; a clock this far off is a bug, and such a row could not be read back.
        raise ValueError(f"timestamp {value.isoformat()} is outside 1970-9000")
    return utc


def _id(value: str) -> str:
    return check_id("id", value)


def _kind(value: str | None) -> str | None:
    return None if value is None else check_text("kind", value, MAX_KIND_LENGTH)


def _error(value: str | None) -> str | None:
    return None if value is None else check_text("error", value, MAX_WIRE_ERROR_LENGTH)


def _payload(value: dict[str, PayloadValue] | None) -> dict[str, PayloadValue] | None:
    return None if value is None else check_payload(value)


def _ref(name: str) -> WithJsonSchema:
    # The schema of a shared rule is written once, in _wire_schema, and referred to from each field.
    return WithJsonSchema({"x-wire": name})


Count = Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=0, le=MAX_COUNT), _ref("Count")]
Rate = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Unit = Annotated[
    ProgressUnit | str,
    BeforeValidator(_unit),
    PlainSerializer(lambda u: str(u), return_type=str),
    _ref("Unit"),
]
Id = Annotated[str, Strict(), AfterValidator(_id), _ref("Id")]
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_timestamp), AfterValidator(_utc), _ref("Timestamp")]
Kind = Annotated[str | None, AfterValidator(_kind), _ref("Kind")]
ErrorText = Annotated[str | None, AfterValidator(_error), _ref("ErrorText")]
Payload = Annotated[dict[str, PayloadValue] | None, AfterValidator(_payload), _ref("Payload")]


class JobProgressEnvelope(BaseModel):
    """Progress of one job on one worker at one moment; small and bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    items_done: Count
    items_total: Count | None = None
    unit: Unit = ProgressUnit.UNKNOWN
    throughput_per_sec: Rate | None = None
    eta_seconds: Count | None = None
    updated_at: UtcDatetime
    payload: Payload = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=1)] = PROTOCOL_VERSION
    job_id: Id
    worker_id: Id
    run_id: Id
    seq: Count


class Heartbeat(_Message):
    """Liveness and status of a (job, worker); carries the envelope when it fits."""

    type: Literal["heartbeat"] = "heartbeat"
    status: JobStatus
    kind: Kind = None
    error: ErrorText = None
    progress: JobProgressEnvelope | None = None
    updated_at: UtcDatetime
    resume: Annotated[bool, Strict()] = False
    """The run continues the job's current attempt (``track(..., resume=True)``) rather than starting a
    new one once the previous attempt has ended. Left out of the JSON form when False."""


class ProgressUpdate(_Message):
    """The envelope of a (job, worker), sent when it did not fit inside a heartbeat."""

    type: Literal["progress"] = "progress"
    progress: JobProgressEnvelope


Message = Annotated[Heartbeat | ProgressUpdate, Field(discriminator="type")]
"""Either wire message, told apart by ``type``."""

_MESSAGE: TypeAdapter[Heartbeat | ProgressUpdate] = TypeAdapter(Message)
_MESSAGES: TypeAdapter[list[Heartbeat | ProgressUpdate]] = TypeAdapter(list[Message])


def parse_message(data: str | bytes | dict[str, Any]) -> Heartbeat | ProgressUpdate:
    """Validate one message from JSON text or a decoded mapping.

    Raises:
        pydantic.ValidationError: naming each bad field.
    """
    if isinstance(data, (str, bytes)):
        return _MESSAGE.validate_json(data)
    return _MESSAGE.validate_python(data)


def parse_messages(data: str | bytes | list[Any]) -> list[Heartbeat | ProgressUpdate]:
    """Validate a JSON array (or list) of messages."""
    if isinstance(data, (str, bytes)):
        return _MESSAGES.validate_json(data)
    return _MESSAGES.validate_python(data)


# pydantic-core's serializer holds native locks while it runs: a fork waits for serializations to end,
# so a child never inherits them held (it would hang at its first dump).
_dump_gate = ForkGate()

_NOT_RESUMED: Final = {"resume"}


def dump_message(message: Heartbeat | ProgressUpdate) -> str:
    """The one JSON form of a message: a single line, as stdout, HTTP and captures carry it.

    Safe to call from a thread while another thread forks.
    """
    with _dump_gate:
        if message.type == "heartbeat" and not message.resume:
            # The usual heartbeat keeps the JSON form it had before ``resume`` existed: smaller, and
            # byte for byte what older collectors and captures expect.
            return message.model_dump_json(exclude=_NOT_RESUMED)
        return message.model_dump_json()


_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def trusted(model: type[M], values: dict[str, Any]) -> M:
    """Build ``model`` from complete values the library produced and checked itself, without validation.

    What ``model_construct`` does, minus its per-call defaults and field-name bookkeeping: the reporter
    builds a message per live job per interval, and this keeps that cost flat with 10,000 jobs. Every
    field must be present in ``values``; a test compares the result with the validated model.
    """
    instance = model.__new__(model)
    fields_set = _FIELD_SETS.get(model)
    if fields_set is None:
        fields_set = _FIELD_SETS[model] = set(model.model_fields)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", fields_set)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def utcnow_from(timestamp: float) -> datetime:
    """An aware UTC datetime from a POSIX timestamp."""
    return datetime.fromtimestamp(timestamp, timezone.utc)
