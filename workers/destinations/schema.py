"""The destination of SPEC 4 as pydantic v2 models: the JSON Schema of its shapes.

These models describe the destination file entry and the admin API's bodies
(request, PATCH and masked response) for the OpenAPI document and for editors
validating a destinations file. Validation proper, with its messages naming
the destination, the field, the bad value and the fix, stays in
:func:`workers.destinations.rules.parse_destination`; the models are written to
accept what it accepts and to describe exactly what ``Destination.to_dict``
returns, so a document generated from them cannot drift from the API without
the schema test (``tests/admin/test_openapi.py``) failing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from producer.events import EVENT_TYPES
from workers.destinations.backoff import MAX_ATTEMPTS_LIMIT
from workers.destinations.expiry import MAX_EXPIRE_AFTER_S

__all__ = [
    "CircuitModel",
    "DestinationFile",
    "DestinationIn",
    "DestinationOut",
    "DestinationPatch",
    "ErrorBody",
    "ErrorItem",
    "RetryModel",
    "SecretHeader",
    "TlsModel",
    "file_json_schema",
]

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
Result = Literal["success", "failure"]
SCOPE_PATTERN = r"^(global|(route|account|realm):\S(.*\S)?)$"
MASK_PATTERN = r"^\*{8}$"
#: ``whsec_`` + base64, or the mask that keeps the stored secret.
SECRET_PATTERN = r"^(whsec_[A-Za-z0-9+/=]+|\*{8})$"
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s#]+$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"

_STRICT = ConfigDict(extra="forbid")
FILTER_DESCRIPTION = (
    "conditions on the event's parameters and scope keys (SPEC 2 names, upper case): "
    '{"NAME": value} or {"NAME": {"$op": operand}} with $eq $neq $in $nin $gt $gte $lt $lte '
    "$exists $startsWith $contains, combined with $and/$or (lists) and $not; a number "
    "operand compares numerically; null or {}: no filter"
)
_OPERAND: dict[str, Any] = {"type": ["string", "number"]}
_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": _OPERAND}
_CONDITION: dict[str, Any] = {"anyOf": [_OPERAND, {
    "type": "object", "minProperties": 1, "additionalProperties": False,
    "properties": {"$eq": _OPERAND, "$neq": _OPERAND, "$gt": _OPERAND, "$gte": _OPERAND,
                   "$lt": _OPERAND, "$lte": _OPERAND, "$in": _LIST, "$nin": _LIST,
                   "$exists": {"type": "boolean"}, "$startsWith": {"type": "string"},
                   "$contains": {"type": "string"}}}]}
_NESTED: dict[str, Any] = {"type": "object", "minProperties": 1}
#: The filter's JSON Schema: operators and operand types at the top level (nested filters
#: are objects; parse_destination checks them, and the names against the event types).
FILTER_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"$and": {"type": "array", "minItems": 1, "items": _NESTED},
                   "$or": {"type": "array", "minItems": 1, "items": _NESTED},
                   "$not": _NESTED},
    "patternProperties": {"^[A-Z][A-Z_]*$": _CONDITION},
}
FilterDoc = Annotated[dict[str, Any], WithJsonSchema(FILTER_SCHEMA)]
FILTER_EXAMPLES = [{"DURATION": {"$gt": 10}},
                   {"$or": [{"CALLEDAORS": {"$contains": "sip:100@"}},
                            {"CALLEDAORS": {"$contains": "sip:200@"}}]}]


class TlsModel(BaseModel):
    """``tls``: certificate checks of HTTPS destinations (paths on the worker hosts)."""

    model_config = _STRICT
    verify: bool = Field(default=True, description="false: do not verify the server certificate")
    ca_bundle: str | None = Field(default=None, min_length=1, description="CA bundle file (PEM)")
    client_cert: str | None = Field(
        default=None, min_length=1, description="client certificate (PEM)"
    )
    client_key: str | None = Field(
        default=None, min_length=1, description="its key; needs client_cert"
    )


class CircuitModel(BaseModel):
    """``circuit``: when the destination's circuit opens, and when it probes again."""

    model_config = _STRICT
    failures: int = Field(default=5, ge=1, description="consecutive failures that open the circuit")
    reset_s: float = Field(default=30.0, gt=0, description="seconds open before a probe")


class RetryModel(BaseModel):
    """``retry``: attempts and backoff (SPEC 4)."""

    model_config = _STRICT
    max_attempts: int = Field(default=8, ge=1, le=MAX_ATTEMPTS_LIMIT)
    backoff_s: float = Field(default=1.0, gt=0, description="first wait; doubles per attempt")
    backoff_max_s: float = Field(default=600.0, gt=0, description="longest wait; >= backoff_s")
    policy: Literal["exponential", "standard"] = Field(
        default="exponential", description="standard: the Standard Webhooks schedule instead"
    )


class SecretHeader(BaseModel):
    """A header holding a credential: stored encrypted, shown masked."""

    model_config = _STRICT
    value: str = Field(description="the value; ******** keeps the stored one")
    secret: bool = Field(default=True, description="false: a plain header (as NAME: value)")


class SecretHeaderPatch(BaseModel):
    """A secret header in a PATCH: fields not given stay as they are."""

    model_config = _STRICT
    value: str | None = None
    secret: bool | None = None


class _TokenPlacement(BaseModel):
    model_config = _STRICT
    token_in: Literal["header", "params"] = Field(
        default="header", description="params: the token fills %TOKEN% in the URL parameters"
    )
    token_header: str = Field(default="Authorization", pattern=HEADER_NAME_PATTERN)
    token_prefix: str = Field(default="Bearer ", description="written before the token")


class OAuth2Auth(_TokenPlacement):
    """``auth`` of type oauth2_client_credentials (RFC 6749 section 4.4)."""

    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(pattern=URL_PATTERN)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(
        min_length=1, description="write-only, stored encrypted; ******** keeps the stored one"
    )
    scope: str | None = Field(default=None, min_length=1)
    client_auth: Literal["basic", "post"] = Field(
        default="basic", description="basic: HTTP Basic (RFC 6749 2.3.1); post: form fields"
    )


class LoginFormAuth(_TokenPlacement):
    """``auth`` of type login_form: a session token from a login form (FACE REST API)."""

    type: Literal["login_form"]
    login_url: str = Field(pattern=URL_PATTERN)
    username: str = Field(min_length=1)
    password: str = Field(
        min_length=1, description="write-only, stored encrypted; ******** keeps the stored one"
    )
    expiration_s: int | None = Field(default=None, ge=1, le=86_400 * 366)
    username_field: str = "userEmail"
    password_field: str = "password"
    expiration_field: str = "expirationSeconds"


Auth = OAuth2Auth | LoginFormAuth
HeaderValue = str | SecretHeader
Params = str | dict[EventType, str]
Events = Literal["all"] | list[EventType]
ExpireSeconds = Annotated[float, Field(gt=0, le=MAX_EXPIRE_AFTER_S)]
#: ``expire_after_s``: seconds for every event type, or a map from event type to seconds.
ExpireAfter = ExpireSeconds | dict[EventType, ExpireSeconds]


class _Fields(BaseModel):
    """The optional fields of SPEC 4, shared by the request and the response shapes."""

    model_config = _STRICT
    preset: Literal["face", "json"] | None = Field(
        default=None, description="fills fields; the fields given override it"
    )
    scope: str = Field(
        default="global",
        pattern=SCOPE_PATTERN,
        description="global, route:NAME, account:NAME or realm:NAME",
    )
    params: Params | None = Field(
        default="",
        description="URL parameter template (%NAME% placeholders), or "
        "a map from event type to template",
    )
    method: Literal["GET", "POST"] = "GET"
    results: list[Result] = Field(default=["success", "failure"], min_length=1)
    headers: dict[str, HeaderValue] = Field(
        default={}, description="extra request headers: NAME: value or NAME: {value, secret: true}"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    tls: TlsModel = TlsModel()
    allow_cidrs: list[str] | str | None = Field(
        default=[], description="outbound addresses allowed (CIDRs: a list, or one "
        "comma-separated string)")
    deny_cidrs: list[str] | str | None = Field(
        default=[], description="outbound addresses refused (CIDRs: a list, or one "
        "comma-separated string)")
    circuit: CircuitModel = CircuitModel()
    retry: RetryModel = RetryModel()
    rate_limit_per_s: float | None = Field(default=None, gt=0, description="across all workers")
    max_in_flight: int | None = Field(default=None, ge=1, description="across all workers")
    ordered: bool = Field(
        default=False, description="deliver one recording's notifications in order"
    )
    on_dead_letter: Literal["continue", "hold"] = Field(
        default="continue", description="ordered destinations: hold the recording's later ones"
    )
    expire_after_s: ExpireAfter | None = Field(
        default=None,
        description="seconds from the event's occurred_at after which an undelivered "
        "notification is a dead letter (expired after N s); or a map event type -> seconds",
    )
    enabled: bool = True
    auth: Auth | None = Field(default=None, description="how a token is obtained and sent")
    filter: FilterDoc | None = Field(
        default=None, description=FILTER_DESCRIPTION, examples=FILTER_EXAMPLES
    )


class DestinationIn(_Fields):
    """A destination as created or replaced (POST, PUT) and as written in a file."""

    name: str = Field(min_length=1, max_length=100)
    # not required (a preset may fill it), never null: the schema shows no null type
    events: Events = Field(
        default=None,  # type: ignore[arg-type]
        description="event types, or all (required unless a preset fills them)",
    )
    url: str = Field(
        pattern=URL_PATTERN, description="absolute http(s) URL; user:pass@ is a secret"
    )
    secret: str | None = Field(
        default=None,
        pattern=SECRET_PATTERN,
        description="signing secret, write-only; missing or ******** keeps it, null clears it",
    )


class DestinationOut(_Fields):
    """A destination as the API shows it: secrets masked, defaults left out."""

    name: str
    events: Events
    url: str = Field(description="userinfo masked as ********@")
    secret: str | None = Field(default=None, pattern=MASK_PATTERN, description="present when set")


class DestinationPatch(BaseModel):
    """PATCH: JSON merge (RFC 7396). Fields not sent stay; objects merge per key; null
    puts a field back to its default (``secret: null`` clears the secret)."""

    model_config = _STRICT
    name: str | None = Field(default=None, description="must equal the name in the path")
    preset: Literal["face", "json"] | None = None
    events: Events | None = None
    scope: str | None = Field(default=None, pattern=SCOPE_PATTERN)
    url: str | None = Field(default=None, pattern=URL_PATTERN)
    params: Params | None = None
    method: Literal["GET", "POST"] | None = None
    results: list[Result] | None = Field(default=None, min_length=1)
    headers: dict[str, str | SecretHeaderPatch | None] | None = None
    secret: str | None = Field(default=None, pattern=SECRET_PATTERN)
    timeout_s: float | None = Field(default=None, gt=0, le=60)
    tls: (
        dict[Literal["verify", "ca_bundle", "client_cert", "client_key"], bool | str | None] | None
    ) = None
    allow_cidrs: list[str] | str | None = None
    deny_cidrs: list[str] | str | None = None
    circuit: dict[Literal["failures", "reset_s"], float | None] | None = None
    retry: (
        dict[Literal["max_attempts", "backoff_s", "backoff_max_s", "policy"], float | str | None]
        | None
    ) = None
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    max_in_flight: int | None = Field(default=None, ge=1)
    ordered: bool | None = None
    on_dead_letter: Literal["continue", "hold"] | None = None
    expire_after_s: ExpireSeconds | dict[EventType, ExpireSeconds | None] | None = None
    enabled: bool | None = None
    auth: dict[str, str | int | None] | None = None
    filter: FilterDoc | None = Field(
        default=None, description="merges per key like every object (RFC 7396); null removes "
        "the filter"
    )


class DestinationFile(BaseModel):
    """The file of ``recnotify destinations import`` / ``export``."""

    model_config = _STRICT
    destinations: list[DestinationIn] = []


class ErrorItem(BaseModel):
    field: str = Field(description="the refused field (dotted), or empty for the whole request")
    message: str = Field(description="what is wrong, with the bad value, and how to fix it")


class ErrorBody(BaseModel):
    """Every answer other than 2xx (SPEC 8)."""

    errors: list[ErrorItem] = Field(min_length=1)


def file_json_schema() -> dict[str, Any]:
    """The JSON Schema of a destinations file (for editors)."""
    schema = DestinationFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "recnotify destinations file"
    return schema
