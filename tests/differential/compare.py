"""Apply each webhook's patch to the Pod, diff the results, and classify every difference.

A difference is a leaf where the Pod patched by our webhook and the Pod patched by upstream's
disagree. Lists of named objects (containers, env, mounts, volumes) are aligned by name, so
that one extra variable shows up as that variable, not as a shifted list; the relative order
of the names both sides have is compared separately.

Each difference must match one narrow rule, named after the deviation of docs/compatibility.md
section 2 (or of README "Differences from upstream") that allows it; anything else is
unclassified and fails the tier with a readable line:
`pod 17 (seed 20261123, diff-alpha/pod-17): spec.containers[app].env[AWS_REGION].value:
ours 'us-west-2' != upstream <absent> (input <absent>)`.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonpatch

from tests.differential.generator import FLAG_AUDIENCE, FLAG_STS, Case, Identity
from tests.support.reviews import patch_or_none


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()
PathPart = str | int
Path = tuple[PathPart, ...]

# --- classes of difference ----------------------------------------------------------------

DROPPED_UNKNOWN = "2a: upstream dropped a field its Go types do not know"
DROPPED_ZERO = "2a: upstream rewrites existing fields (omitempty dropped an empty value or null)"
GO_DEFAULT = "2a: upstream rewrites existing fields (Go zero value added: resources {}, divisor 0, grpc service null)"
QUANTITY = (
    "2a: upstream rewrites existing fields (quantity canonicalised; the API server would too)"
)
RESENT = "2a: upstream re-sent unchanged arrays (ours: no patch when nothing to do)"
DENIED = "2b: upstream answers allowed:false for a Pod its Go types cannot decode"
CM_AUDIENCE = "2d: ConfigMap entry without Audience falls back to --token-audience"
CM_STS = "2d: ConfigMap entry without UseRegionalSTS falls back to --sts-regional-endpoint"
CM_EXPIRATION = "2d/README: ConfigMap TokenExpiration below 600 raised to 600"
CM_REJECTED = (
    "2d/README: upstream's ConfigMap expiration below 600 makes the API server reject the Pod"
)
NO_TYPEMETA = "pinned upstream v0.6.17 predates #310: no kind/apiVersion echoed"
EXPLANATIONS = "README 'Explanations': ours adds warnings and auditAnnotations"
JITTER = "§1 kept: container-credentials jitter, both in [79200, 86400]"

#: Go json names of the k8s.io/api v0.36 types upstream re-serialises (spec section 7.8).
CONTAINER_FIELDS = frozenset(
    [
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    ]
)
ENV_FIELDS = frozenset(("name", "value", "valueFrom"))
MOUNT_FIELDS = frozenset(
    [
        "name",
        "readOnly",
        "recursiveReadOnly",
        "mountPath",
        "subPath",
        "mountPropagation",
        "subPathExpr",
    ]
)
SECURITY_CONTEXT_FIELDS = frozenset(
    [
        "capabilities",
        "privileged",
        "seLinuxOptions",
        "windowsOptions",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "procMount",
        "seccompProfile",
        "appArmorProfile",
    ]
)
#: Container fields that are `omitempty` values (not pointers): Go drops them when empty.
OMITEMPTY_CONTAINER_FIELDS = frozenset(
    [
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resizePolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "stdin",
        "stdinOnce",
        "tty",
    ]
)
#: The same for EnvVar and VolumeMount.
OMITEMPTY_ENV_FIELDS = frozenset(("value",))
OMITEMPTY_MOUNT_FIELDS = frozenset(("readOnly", "subPath", "subPathExpr", "mountPropagation"))
ZERO_VALUES: tuple[Any, ...] = ("", False, 0, [], {}, None)
#: Upstream's messages when its Go types cannot decode the Pod (generator tags `undecodable-*`).
UNDECODABLE = re.compile(
    r"^(json: cannot unmarshal |quantities must match the regular expression )"
)


@dataclass(frozen=True)
class Difference:
    path: Path
    ours: Any
    upstream: Any
    input: Any

    def render(self) -> str:
        return (
            f"{render_path(self.path)}: ours {short(self.ours)} != upstream "
            f"{short(self.upstream)} (input {short(self.input)})"
        )


def render_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        else:
            out += ("." if out else "") + part
    return out or "<pod>"


def short(value: Any, limit: int = 160) -> str:
    if value is MISSING:
        return "<absent>"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- diff -----------------------------------------------------------------------------------


def _named(items: Any) -> dict[str, Any] | None:
    """{name: item} for a list of objects with unique string names, else None."""
    if not isinstance(items, list) or not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        if item["name"] in out:
            return None
        out[item["name"]] = item
    return out


def _child(base: Any, part: PathPart) -> Any:
    if base is MISSING:
        return MISSING
    if isinstance(part, str) and part.startswith("[") and isinstance(base, list):
        name = part[1:-1]
        return next((i for i in base if isinstance(i, dict) and i.get("name") == name), MISSING)
    if isinstance(part, int):
        return base[part] if isinstance(base, list) and part < len(base) else MISSING
    return base.get(part, MISSING) if isinstance(base, dict) else MISSING


def diff(ours: Any, upstream: Any, base: Any, path: Path = ()) -> list[Difference]:
    if ours == upstream:
        return []
    if isinstance(ours, dict) and isinstance(upstream, dict):
        out: list[Difference] = []
        for key in sorted(set(ours) | set(upstream)):
            out += diff(
                ours.get(key, MISSING), upstream.get(key, MISSING), _child(base, key), (*path, key)
            )
        return out
    if isinstance(ours, list) and isinstance(upstream, list):
        named_ours, named_up = _named(ours), _named(upstream)
        if named_ours is not None and named_up is not None:
            out = []
            common_ours = [n for n in named_ours if n in named_up]
            common_up = [n for n in named_up if n in named_ours]
            if common_ours != common_up:
                out.append(Difference((*path, "<order>"), common_ours, common_up, MISSING))
            for name in sorted(set(named_ours) | set(named_up)):
                part = f"[{name}]"
                out += diff(
                    named_ours.get(name, MISSING),
                    named_up.get(name, MISSING),
                    _child(base, part),
                    (*path, part),
                )
            return out
        if len(ours) == len(upstream):
            out = []
            for i, (a, b) in enumerate(zip(ours, upstream, strict=True)):
                out += diff(a, b, _child(base, i), (*path, i))
            return out
    return [Difference(path, ours, upstream, base)]


# --- quantities -----------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def quantity(text: Any) -> Decimal | None:
    """The value of a Kubernetes quantity string, or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    if suffix[:1] in ("e", "E"):
        return value * Decimal(10) ** int(suffix[1:])
    return value * _SUFFIX[suffix]


# --- classification -------------------------------------------------------------------------


def applied_entry(identity: Identity | None) -> dict[str, Any] | None:
    """The ConfigMap entry that supplies the role, when the role comes from the ConfigMap."""
    if identity is None:
        return None
    if identity.source == "cm":
        return identity.cm_entry
    if identity.source == "cm-wildcard":
        return identity.wildcard_entry
    return None


def _container_relative(path: Path) -> Path | None:
    if len(path) >= 3 and path[0] == "spec" and path[1] in ("containers", "initContainers"):
        return path[3:]
    return None


#: The Go types below a container that upstream re-serialises: (depth, first key) -> fields.
KNOWN_BELOW_CONTAINER: dict[tuple[int, PathPart], frozenset[str]] = {
    (3, "env"): ENV_FIELDS,
    (3, "volumeMounts"): MOUNT_FIELDS,
    (2, "securityContext"): SECURITY_CONTEXT_FIELDS,
}


def _dropped_unknown(case: Case, d: Difference) -> bool:
    if d.upstream is not MISSING or d.ours is MISSING or d.ours != d.input:
        return False
    rel = _container_relative(d.path)
    if not rel:
        return False
    known = CONTAINER_FIELDS if len(rel) == 1 else KNOWN_BELOW_CONTAINER.get((len(rel), rel[0]))
    return known is not None and rel[-1] not in known


def _dropped_zero(case: Case, d: Difference) -> bool:
    if d.upstream is not MISSING or d.ours is MISSING or d.ours != d.input:
        return False
    rel = _container_relative(d.path)
    if rel is None or not any(d.ours == z and type(d.ours) is type(z) for z in ZERO_VALUES):
        return False
    if len(rel) == 1:
        return rel[0] in OMITEMPTY_CONTAINER_FIELDS
    if len(rel) == 3 and rel[0] == "env":
        return rel[2] in OMITEMPTY_ENV_FIELDS
    return len(rel) == 3 and rel[0] == "volumeMounts" and rel[2] in OMITEMPTY_MOUNT_FIELDS


def _go_default(case: Case, d: Difference) -> bool:
    if d.ours is not MISSING or d.input is not MISSING:
        return False
    rel = _container_relative(d.path)
    if rel is None:
        return False
    if rel == ("resources",) and d.upstream == {}:
        return True
    if rel[-2:] == ("resourceFieldRef", "divisor") and d.upstream == "0":
        return True
    return rel[-2:] == ("grpc", "service") and d.upstream is None


def _quantity(case: Case, d: Difference) -> bool:
    if d.ours != d.input:
        return False
    rel = _container_relative(d.path)
    if rel is None or not (
        (len(rel) == 3 and rel[0] == "resources" and rel[1] in ("limits", "requests"))
        or rel[-2:] == ("resourceFieldRef", "divisor")
    ):
        return False
    a, b = quantity(d.ours), quantity(d.upstream)
    return a is not None and a == b


def _is_token_field(d: Difference, leaf: str) -> bool:
    return (
        len(d.path) >= 3
        and d.path[:2] == ("spec", "volumes")
        and d.path[-2:] == ("serviceAccountToken", leaf)
    )


def _jitter(case: Case, d: Difference) -> bool:
    return (
        _is_token_field(d, "expirationSeconds")
        and case.identity is not None
        and case.identity.cc  # the container-credentials volume, whatever its name
        and d.path[2] != "[aws-iam-token]"
        and all(isinstance(v, int) and 79200 <= v <= 86400 for v in (d.ours, d.upstream))
    )


def _cm_audience(case: Case, d: Difference) -> bool:
    entry = applied_entry(case.identity)
    return (
        entry is not None
        and "Audience" not in entry
        and _is_token_field(d, "audience")
        and d.ours == FLAG_AUDIENCE
        and d.upstream is MISSING
    )


def _cm_sts(case: Case, d: Difference) -> bool:
    entry = applied_entry(case.identity)
    rel = _container_relative(d.path)
    return (
        entry is not None
        and "UseRegionalSTS" not in entry
        and FLAG_STS
        and rel == ("env", "[AWS_STS_REGIONAL_ENDPOINTS]")
        and d.ours == {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}
        and d.upstream is MISSING
        and d.input is MISSING
    )


def _cm_expiration(case: Case, d: Difference) -> bool:
    entry = applied_entry(case.identity)
    if entry is None or not _is_token_field(d, "expirationSeconds"):
        return False
    low = entry.get("TokenExpiration", 0)
    return 0 != low < 600 and d.ours == 600 and d.upstream == low


Rule = Callable[[Case, Difference], bool]
RULES: tuple[tuple[str, Rule], ...] = (
    (DROPPED_UNKNOWN, _dropped_unknown),
    (DROPPED_ZERO, _dropped_zero),
    (GO_DEFAULT, _go_default),
    (QUANTITY, _quantity),
    (JITTER, _jitter),
    (CM_AUDIENCE, _cm_audience),
    (CM_STS, _cm_sts),
    (CM_EXPIRATION, _cm_expiration),
)
#: Classes that only describe upstream re-serialising what was already there.
REWRITES = frozenset((DROPPED_UNKNOWN, DROPPED_ZERO, GO_DEFAULT, QUANTITY))


def classify(case: Case, d: Difference) -> str | None:
    for name, rule in RULES:
        if rule(case, d):
            return name
    return None


# --- outcomes -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of classified differences, and the unclassified ones as readable lines."""

    compared: int = 0
    identical: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """How the two webhooks answered: both patched, neither, only upstream, denied, ..."""
    classes: Counter[str] = field(default_factory=Counter)
    pods_by_class: Counter[str] = field(default_factory=Counter)
    unclassified: list[str] = field(default_factory=list)

    def add(self, case: Case, name: str) -> None:
        self.classes[name] += 1

    def fail(self, case: Case, message: str) -> None:
        self.unclassified.append(
            f"pod {case.index} (seed {case.seed}, {case.namespace}/{case.name}): {message}"
        )

    def report(self) -> str:
        lines = [f"{self.compared} Pods compared, {self.identical} identical without any rule"]
        if self.outcomes:
            lines.append(
                "outcomes: " + ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
            )
        for name, count in sorted(self.classes.items()):
            lines.append(f"  {count:5d} x {name} ({self.pods_by_class[name]} Pods)")
        if self.unclassified:
            lines.append(f"{len(self.unclassified)} UNCLASSIFIED difference(s):")
            lines += [f"  {line}" for line in self.unclassified[:60]]
            if len(self.unclassified) > 60:
                lines.append(f"  ... and {len(self.unclassified) - 60} more")
        return "\n".join(lines)


def compare_http_error(
    case: Case, side: str, status: int, body: str, other: Mapping[str, Any], tally: Tally
) -> None:
    """One webhook answered with an HTTP error instead of a review: allowed only for ours, with
    a 4xx, where upstream denies a Pod its Go types cannot decode (2b: ours leaves the verdict to
    the failurePolicy instead of denying)."""
    tally.compared += 1
    response = other.get("response") or {}
    undecodable = any(tag.startswith("undecodable-") for tag in case.tags)
    message = (response.get("status") or {}).get("message", "")
    if (
        side == "ours"
        and 400 <= status < 500
        and undecodable
        and response.get("allowed") is False
        and UNDECODABLE.match(message)
    ):
        tally.outcomes["upstream denied, ours HTTP 4xx"] += 1
        tally.add(case, DENIED)
        tally.pods_by_class[DENIED] += 1
        return
    tally.fail(case, f"{side} answered HTTP {status}: {body}")


def apply(pod: Mapping[str, Any], patch: list[dict[str, Any]] | None) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(pod)), patch or [])
    return result


def compare_pods(
    case: Case, ours: Any, upstream: Any, base: Any, tally: Tally, *, where: str = ""
) -> set[str]:
    """Diff two Pods and classify every difference; returns the classes seen."""
    seen: set[str] = set()
    for d in diff(ours, upstream, base):
        name = classify(case, d)
        if name is None:
            tally.fail(case, f"{where}{d.render()}")
        else:
            tally.add(case, name)
            seen.add(name)
    return seen


def compare_reviews(
    case: Case,
    review: Mapping[str, Any],
    ours: Mapping[str, Any],
    upstream: Mapping[str, Any],
    tally: Tally,
) -> None:
    """Both answers to one AdmissionReview: the envelope, then the Pods after each patch."""
    tally.compared += 1
    seen: set[str] = set()
    before = len(tally.unclassified)
    ours_r, up_r = ours.get("response") or {}, upstream.get("response") or {}
    _compare_envelopes(case, review, ours, upstream, tally, seen)
    if _both_allowed(case, ours_r, up_r, tally, seen):
        patches = _patches(case, ours_r, up_r, tally)
        if patches is not None:
            ours_patch, up_patch = patches
            pod = review["request"]["object"]
            _compare_patched(case, pod, ours_patch, up_patch, tally, seen)
    _finish(case, tally, seen, before)


#: Every member our AdmissionResponse may carry.
RESPONSE_KEYS = frozenset(
    ("uid", "allowed", "patch", "patchType", "warnings", "auditAnnotations", "status")
)


def _compare_envelopes(
    case: Case,
    review: Mapping[str, Any],
    ours: Mapping[str, Any],
    upstream: Mapping[str, Any],
    tally: Tally,
    seen: set[str],
) -> None:
    """uid always; kind/apiVersion echoed (upstream v0.6.17 does not); no unknown members."""
    request = review["request"]
    ours_r, up_r = ours.get("response") or {}, upstream.get("response") or {}
    for side, response in (("ours", ours_r), ("upstream", up_r)):
        if response.get("uid") != request["uid"]:
            tally.fail(case, f"{side} answered uid {response.get('uid')!r}, not {request['uid']!r}")
    if (ours.get("kind"), ours.get("apiVersion")) != (review["kind"], review["apiVersion"]):
        tally.fail(
            case, f"ours echoed kind/apiVersion {ours.get('kind')!r}/{ours.get('apiVersion')!r}"
        )
    up_typemeta = (upstream.get("kind"), upstream.get("apiVersion"))
    if up_typemeta == (None, None):
        tally.add(case, NO_TYPEMETA)
        seen.add(NO_TYPEMETA)
    elif up_typemeta != (review["kind"], review["apiVersion"]):
        tally.fail(case, f"upstream echoed kind/apiVersion {up_typemeta}")
    if "warnings" in ours_r or "auditAnnotations" in ours_r:
        tally.add(case, EXPLANATIONS)
        seen.add(EXPLANATIONS)
    unknown_keys = set(ours_r) - RESPONSE_KEYS
    if unknown_keys:
        tally.fail(case, f"ours answered unexpected response keys {sorted(unknown_keys)}")


def _both_allowed(
    case: Case,
    ours_r: Mapping[str, Any],
    up_r: Mapping[str, Any],
    tally: Tally,
    seen: set[str],
) -> bool:
    """Whether both admitted the Pod; a denial is classified (or failed) here."""
    if up_r.get("allowed") is not True:
        message = (up_r.get("status") or {}).get("message", "")
        tally.outcomes["upstream denied"] += 1
        undecodable = any(tag.startswith("undecodable-") for tag in case.tags)
        if ours_r.get("allowed") is True and undecodable and UNDECODABLE.match(message):
            tally.add(case, DENIED)
            seen.add(DENIED)
        else:
            tally.fail(
                case,
                f"upstream allowed={up_r.get('allowed')!r} ({message!r}), ours allowed={ours_r.get('allowed')!r}",
            )
        return False
    if ours_r.get("allowed") is not True:
        tally.fail(case, f"ours allowed={ours_r.get('allowed')!r}: {ours_r.get('status')}")
        return False
    return True


Patch = list[dict[str, Any]] | None


def _patches(
    case: Case, ours_r: Mapping[str, Any], up_r: Mapping[str, Any], tally: Tally
) -> tuple[Patch, Patch] | None:
    """Both patches decoded (None where a side sent none), or None when one is unreadable."""
    # patchType goes with the patch.
    for side, response in (("ours", ours_r), ("upstream", up_r)):
        if ("patch" in response) != (response.get("patchType") == "JSONPatch"):
            tally.fail(case, f"{side}: patch and patchType disagree: {sorted(response)}")
    try:
        ours_patch, up_patch = patch_or_none(ours_r), patch_or_none(up_r)
    except (ValueError, TypeError) as exc:
        tally.fail(case, f"undecodable patch: {exc}")
        return None
    if ours_patch is not None:
        for op in ours_patch:
            if op.get("op") != "add":
                tally.fail(case, f"ours sent a non-add operation {op}")
        if not ours_patch:
            tally.fail(case, "ours sent an empty patch instead of none")
    tally.outcomes[
        {(True, True): "both patched", (False, False): "neither patched"}.get(
            (ours_patch is not None, up_patch is not None),
            "only ours patched" if ours_patch is not None else "only upstream patched",
        )
    ] += 1
    return ours_patch, up_patch


def _compare_patched(
    case: Case, pod: Any, ours_patch: Patch, up_patch: Patch, tally: Tally, seen: set[str]
) -> None:
    """The Pods after each patch, and a patch only one side sent."""
    try:
        ours_pod, up_pod = apply(pod, ours_patch), apply(pod, up_patch)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        tally.fail(case, f"a patch does not apply: {exc}")
        return
    seen |= compare_pods(case, ours_pod, up_pod, pod, tally)
    if ours_patch is None and up_patch is not None:
        # Upstream's patch must change nothing but its own re-serialisation.
        changes = diff(up_pod, pod, pod)
        if all(classify(case, _swap(d)) in REWRITES for d in changes):
            tally.add(case, RESENT)
            seen.add(RESENT)
        else:
            tally.fail(case, "ours sent no patch but upstream's changes the Pod")
    elif up_patch is None and ours_patch is not None:
        tally.fail(case, "ours sent a patch where upstream sent none")


def _swap(d: Difference) -> Difference:
    """A difference between upstream's Pod and the input, seen as ours(=input) vs upstream."""
    return Difference(d.path, d.input, d.ours, d.input)


def _finish(case: Case, tally: Tally, seen: set[str], before: int) -> None:
    for name in seen:
        tally.pods_by_class[name] += 1
    if not seen - {NO_TYPEMETA, EXPLANATIONS} and len(tally.unclassified) == before:
        tally.identical += 1
