"""Pure. Turns ServiceAccount annotations, the ConfigMap and the container-credentials file into
the small immutable entries the mutation core reads. No I/O, no logging.

Parsing happens when a source changes (an informer event, a file reload), never per admission.
Values follow Go's parsers, as upstream reads them: strconv.ParseBool, strconv.ParseInt base 10,
encoding/json with case-insensitive field names, encoding/csv for skip-containers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.admission.endpoints import EndpointAnnotations, parse_endpoint_annotations
from webhook.admission.notes import Note
from webhook.aws import SessionName, looks_like_role_arn, parse_session_name
from webhook.aws import role_arn as compose_role_arn
from webhook.config import MIN_TOKEN_EXPIRATION, MutationConfig
from webhook.errors import CsvError
from webhook.gocompat import MISSING, first_csv_record, go_json_field, parse_go_bool, parse_go_int10

__all__ = [
    "NO_SESSION_NAME",
    "ConfigMapEntry",
    "ServiceAccountEntry",
    "parse_config_map",
    "parse_container_credentials",
    "parse_service_account",
    "parse_session_name_annotation",
    "parse_skip_containers",
    "parse_token_expiration",
]

ROLE_ARN = "role-arn"
AUDIENCE = "audience"
STS_REGIONAL_ENDPOINTS = "sts-regional-endpoints"
TOKEN_EXPIRATION = "token-expiration"
SKIP_CONTAINERS = "skip-containers"
INCLUDE_CONTAINERS = "include-containers"  # ours: only these containers get credentials
REGION = "region"  # ours: per-ServiceAccount region instead of --aws-default-region
SESSION_NAME = "role-session-name"  # ours: AWS_ROLE_SESSION_NAME (ServiceAccount or Pod)
CONTAINER_ROLE_ARN = "container-role-arn."  # ours: `<prefix>/container-role-arn.<container>`
REQUIRE_CREDENTIALS_LABEL = "eks.amazonaws.com/require-credentials"  # literal, like skip's

NO_SESSION_NAME = SessionName("")
"""An annotation that says `""`: no session name, whatever --role-session-name says."""

CONFIG_MAP_NAME = "pod-identity-webhook"
CONFIG_MAP_KEY = "config"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAccountEntry:
    """What mutation needs from one ServiceAccount (upstream's cache entry)."""

    role_arn: str
    audience: str
    regional_sts: bool
    token_expiration: int
    notes: tuple[Note, ...] = ()
    endpoints: EndpointAnnotations | None = None
    """Ours: the `sts-endpoint-url` and `ca-bundle-config-map` annotations, if any."""
    region: str | None = None
    """From the `region` annotation; None means --aws-default-region."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The prefixed annotations only, for extension rules."""
    session_name: SessionName | None = None
    """From the `role-session-name` annotation; None: the flag's, NO_SESSION_NAME: none."""


@dataclass(frozen=True, slots=True)
class ConfigMapEntry:
    """One `<namespace>/<serviceaccount>` entry of the pod-identity-webhook ConfigMap."""

    role_arn: str
    audience: str
    regional_sts: bool
    token_expiration: int


def parse_token_expiration(text: str) -> tuple[int | None, bool]:
    """(seconds clamped to at least 600, whether it was raised); (None, False) if invalid."""
    try:
        value = parse_go_int10(text)
    except ValueError:
        return None, False
    return max(MIN_TOKEN_EXPIRATION, value), value < MIN_TOKEN_EXPIRATION


@functools.lru_cache(maxsize=4)
def _unannotated(config: MutationConfig) -> ServiceAccountEntry:
    return ServiceAccountEntry(
        role_arn="",
        audience=config.token_audience,
        regional_sts=config.sts_regional_endpoint,
        token_expiration=config.token_expiration,
    )


def parse_service_account(
    annotations: Mapping[str, Any] | None, config: MutationConfig
) -> ServiceAccountEntry:
    """Upstream's per-ServiceAccount entry; every ServiceAccount gets one, annotated or not."""
    prefix = config.annotation_prefix + "/"
    if not annotations or not any(key.startswith(prefix) for key in annotations):
        return _unannotated(config)  # most ServiceAccounts: one shared entry saves memory
    notes: list[Note] = []
    role = annotations.get(prefix + ROLE_ARN)
    role_arn = role if isinstance(role, str) else ""
    if isinstance(role, str) and config.compose_role_arn and "arn:" not in role:
        role_arn = compose_role_arn(config.partition, config.account_id, role)
    if role_arn and not looks_like_role_arn(role_arn):
        notes.append(Note("invalid-role-arn", f"role ARN {role_arn!r} does not look valid"))

    audience = annotations.get(prefix + AUDIENCE)
    if not isinstance(audience, str):
        audience = config.token_audience

    regional = config.sts_regional_endpoint
    sts = annotations.get(prefix + STS_REGIONAL_ENDPOINTS)
    if isinstance(sts, str):
        try:
            regional = parse_go_bool(sts)
        except ValueError:
            notes.append(
                Note(
                    "invalid-annotation",
                    f"{prefix}{STS_REGIONAL_ENDPOINTS}={sts!r} is not a boolean",
                )
            )

    expiration = config.token_expiration
    raw = annotations.get(prefix + TOKEN_EXPIRATION)
    if isinstance(raw, str):
        value, raised = parse_token_expiration(raw)
        if value is None:
            notes.append(
                Note("invalid-annotation", f"{prefix}{TOKEN_EXPIRATION}={raw!r} is not an integer")
            )
        else:
            expiration = value
            if raised:
                notes.append(
                    Note("expiration-clamped", f"token expiration {raw} raised to {value} seconds")
                )
    endpoints = parse_endpoint_annotations(annotations, prefix, notes)
    region = annotations.get(prefix + REGION)
    session = annotations.get(prefix + SESSION_NAME)
    session_name = (
        parse_session_name_annotation(session, f"{prefix}{SESSION_NAME}", notes)
        if isinstance(session, str)
        else None
    )
    kept = {k: v for k, v in annotations.items() if k.startswith(prefix) and isinstance(v, str)}
    return ServiceAccountEntry(
        role_arn=role_arn,
        audience=audience,
        regional_sts=regional,
        token_expiration=expiration,
        notes=tuple(notes),
        endpoints=endpoints,
        region=region if isinstance(region, str) else None,
        annotations=kept,
        session_name=session_name,
    )


def parse_session_name_annotation(text: str, where: str, notes: list[Note]) -> SessionName | None:
    """A `role-session-name` annotation: NO_SESSION_NAME for `""`, None (with a note) when
    STS would refuse the name, so the next source applies."""
    try:
        return parse_session_name(text) or NO_SESSION_NAME
    except ValueError as exc:
        notes.append(Note("invalid-annotation", f"{where}: {exc}; ignored"))
        return None


def _entry(value: Any, config: MutationConfig) -> ConfigMapEntry:
    if not isinstance(value, dict):
        raise TypeError("the entry is not a JSON object")
    role = go_json_field(value, "RoleARN")
    audience = go_json_field(value, "Audience")
    regional = go_json_field(value, "UseRegionalSTS")
    expiration = go_json_field(value, "TokenExpiration")
    if role is not MISSING and role is not None and not isinstance(role, str):
        raise TypeError("RoleARN is not a string")
    if audience is not MISSING and audience is not None and not isinstance(audience, str):
        raise TypeError("Audience is not a string")
    if regional is not MISSING and regional is not None and not isinstance(regional, bool):
        raise TypeError("UseRegionalSTS is not a boolean")
    if expiration is not MISSING and expiration is not None:
        if isinstance(expiration, bool) or not isinstance(expiration, int):
            raise TypeError("TokenExpiration is not an integer")
        if not -(1 << 63) <= expiration < (1 << 63):
            raise TypeError("TokenExpiration is out of range")
    # Fix of upstream (docs/compatibility.md, 2d): a missing Audience or UseRegionalSTS means
    # the flag.
    return ConfigMapEntry(
        role_arn=role if isinstance(role, str) else "",
        audience=audience if isinstance(audience, str) else config.token_audience,
        regional_sts=regional if isinstance(regional, bool) else config.sts_regional_endpoint,
        token_expiration=expiration
        if isinstance(expiration, int) and expiration
        else config.token_expiration,
    )


def parse_config_map(
    text: str | None, config: MutationConfig
) -> tuple[dict[str, ConfigMapEntry] | None, tuple[Note, ...]]:
    """Entries keyed `namespace/name` (namespace may be `*`) from the `config` data value.

    Returns (None, notes) when the document as a whole is unusable, so a caller can keep the
    previous entries; bad single entries are skipped with a note (upstream crashed on some).
    """
    if text is None:
        return None, (Note("config-map-invalid", "the ConfigMap has no `config` key"),)
    try:
        document = json.loads(text)
    except ValueError as exc:
        return None, (Note("config-map-invalid", f"`config` is not valid JSON: {exc}"),)
    if document is None:
        return {}, ()
    if not isinstance(document, dict):
        return None, (Note("config-map-invalid", "`config` is not a JSON object"),)
    entries: dict[str, ConfigMapEntry] = {}
    notes: list[Note] = []
    for key, value in document.items():
        namespace, slash, rest = key.partition("/")
        if not slash:
            notes.append(Note("config-map-entry-skipped", f"key {key!r} has no '/'; skipped"))
            continue
        if value is None:
            notes.append(Note("config-map-entry-skipped", f"entry {key!r} is null; skipped"))
            continue
        try:
            entry = _entry(value, config)
        except TypeError as exc:
            notes.append(Note("config-map-entry-skipped", f"entry {key!r}: {exc}; skipped"))
            continue
        name = rest.split("/", 1)[0]
        if entry.token_expiration < MIN_TOKEN_EXPIRATION:
            # Upstream injects it as is and the API server then rejects every Pod of that
            # ServiceAccount; raise it like every other expiration (docs/compatibility.md, 2d).
            notes.append(
                Note(
                    "expiration-clamped",
                    f"entry {key!r}: TokenExpiration {entry.token_expiration} raised to "
                    f"{MIN_TOKEN_EXPIRATION} seconds",
                )
            )
            entry = dataclasses.replace(entry, token_expiration=MIN_TOKEN_EXPIRATION)
        entries[f"{namespace}/{name}"] = entry
    return entries, tuple(notes)


def parse_container_credentials(text: str) -> frozenset[tuple[str, str]]:
    """(namespace, serviceAccount) pairs of the container-credentials file; ValueError if bad.

    An empty (or all-whitespace) file means no identities, as upstream treats it.
    """
    if not text.strip():
        return frozenset()
    document = json.loads(text)
    if document is None:
        return frozenset()
    if not isinstance(document, dict):
        raise ValueError("the document is not a JSON object")
    identities = go_json_field(document, "identities")
    if identities is MISSING or identities is None:
        return frozenset()
    if not isinstance(identities, list):
        raise ValueError("`identities` is not a list")
    return frozenset(_identity(item, index) for index, item in enumerate(identities))


def _identity(item: Any, index: int) -> tuple[str, str]:
    """One identity as Go decodes it: null, or missing and null fields, are empty strings."""
    if item is None:
        return "", ""
    if not isinstance(item, dict):
        raise ValueError(f"identities[{index}] is not an object")
    fields = []
    for name in ("namespace", "serviceAccount"):
        value = go_json_field(item, name)
        if value is MISSING or value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"identities[{index}].{name} is not a string")
        fields.append(value)
    return fields[0], fields[1]


def parse_skip_containers(text: str) -> frozenset[str] | None:
    """Container names from the skip-containers annotation; None when it does not parse.

    Strict CSV, names compared exactly: `a, b` names `a` and ` b` (upstream behaviour).
    """
    try:
        return frozenset(first_csv_record(text))
    except CsvError:
        return None
