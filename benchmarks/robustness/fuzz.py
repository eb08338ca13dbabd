"""A seeded corpus of hostile /mutate requests for the soak (standard library only).

Each case is one complete HTTP/1.1 request (bytes, ready to write on a keep-alive TLS
connection) and what a correct server may answer. The mix: valid reviews of annotated,
unannotated and unknown ServiceAccounts; reviews with a field of the wrong type, deleted or
renamed; JSON that is truncated, not UTF-8, deeply nested or not JSON; bodies compressed with
gzip or deflate, valid, corrupt, truncated, with trailing garbage or double-compressed;
encodings the server does not decode (br, zstd, compress, unknown); gzip bombs; wrong content
types, methods and paths; oversized bodies.

    python benchmarks/robustness/fuzz.py --count 20 --seed 1   # prints a summary of N cases
"""

# ruff: noqa: INP001  (a module of the robustness scripts, imported beside them, not a package)
from __future__ import annotations

import argparse
import copy
import gzip
import json
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REVIEW = json.loads((HERE.parent / "review.json").read_text())
MAX_BODY = 4 * 1024 * 1024
KNOWN_ACCOUNTS = ("s3-reader", "default")


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    request: bytes
    allowed: frozenset[int]
    """HTTP statuses a correct server may answer."""
    uid: str | None = None
    """When set, a 200 answer must echo this uid."""


def _request(
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/mutate",
    content_type: str | None = "application/json",
    encoding: str | None = None,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: webhook", f"Content-Length: {len(body)}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if encoding is not None:
        head.append(f"Content-Encoding: {encoding}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _review(rng: random.Random) -> tuple[dict[str, Any], str]:
    review = copy.deepcopy(REVIEW)
    uid = f"{rng.getrandbits(128):032x}"
    review["request"]["uid"] = uid
    account = rng.choice((*KNOWN_ACCOUNTS, "missing-" + str(rng.randrange(1000))))
    review["request"]["object"]["spec"]["serviceAccountName"] = account
    if rng.random() < 0.1:
        review["request"]["object"]["metadata"]["annotations"] = {
            "eks.amazonaws.com/skip-containers": "log-shipper"
        }
    return review, uid


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


WEIRD: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    2**70,
    1.5e308,
    "",
    "x" * 300,
    "\u0000\ud7ff\ue000",
    [],
    [None],
    {},
    {"": ""},
    "metadata",
)


def _mutated(rng: random.Random) -> tuple[bytes, str | None]:
    """A review with one to three nodes replaced, deleted or renamed, and the uid that a 200
    answer must echo (None when the mutation hit the uid or what holds it)."""
    review, _ = _review(rng)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(review) if p]
        path = rng.choice(paths)
        parent: Any = review
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = rng.random()
        if action < 0.6:
            parent[last] = rng.choice(WEIRD)
        elif action < 0.8 and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent, dict):
            parent[f"{last}x"] = parent.pop(last)
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    return json.dumps(review).encode(), uid if isinstance(uid, str) else None


Variant = tuple[str, bytes, str | None, set[int]]


@dataclass(frozen=True)
class _Body:
    """What every encoding of one body draws from."""

    rng: random.Random
    raw: bytes
    packed: bytes


def _identity(b: _Body) -> Variant:
    return "identity", b.raw, None, set()


def _gzip(b: _Body) -> Variant:
    return "gzip", b.packed, b.rng.choice(("gzip", "GZIP", "x-gzip", " gzip ")), set()


def _deflated(b: _Body) -> Variant:
    compressor = zlib.compressobj(wbits=b.rng.choice((zlib.MAX_WBITS, -zlib.MAX_WBITS)))
    return "deflate", compressor.compress(b.raw) + compressor.flush(), "deflate", set()


def _truncated(b: _Body) -> Variant:
    return "gzip-truncated", b.packed[: b.rng.randrange(1, max(2, len(b.packed)))], "gzip", {400}


def _corrupted(b: _Body) -> Variant:
    broken = bytearray(b.packed)
    for _ in range(b.rng.randint(1, 8)):
        broken[b.rng.randrange(len(broken))] = b.rng.randrange(256)
    return "gzip-corrupt", bytes(broken), "gzip", {400}


def _garbage(b: _Body) -> Variant:
    return "gzip-garbage", b.rng.randbytes(b.rng.randrange(0, 200)), "gzip", {400}


def _trailing(b: _Body) -> Variant:
    return "gzip-trailing", b.packed + b.rng.randbytes(b.rng.randrange(1, 40)), "gzip", {400}


def _twice(b: _Body) -> Variant:
    return "gzip-twice", gzip.compress(b.packed), "gzip", {400}


def _listed_twice(b: _Body) -> Variant:
    return "gzip-gzip", gzip.compress(b.packed), "gzip, gzip", {400, 415}


def _unsupported(b: _Body) -> Variant:
    encoding = b.rng.choice(("br", "zstd", "compress", "bogus", "identity, br", "*", ""))
    return "unsupported", b.raw, encoding, {415} if encoding else set()


def _labelled_identity(b: _Body) -> Variant:
    return "identity-labelled", b.raw, "identity", set()


def _deflate_garbage(b: _Body) -> Variant:
    return "deflate-garbage", b.rng.randbytes(b.rng.randrange(1, 100)), "deflate", {400}


# (upper bound of the roll, how the body is encoded); the bounds are cumulative shares.
_VARIANTS: tuple[tuple[float, Callable[[_Body], Variant]], ...] = (
    (0.55, _identity),
    (0.70, _gzip),
    (0.75, _deflated),
    (0.80, _truncated),
    (0.85, _corrupted),
    (0.87, _garbage),
    (0.89, _trailing),
    (0.90, _twice),
    (0.91, _listed_twice),
    (0.95, _unsupported),
    (0.97, _labelled_identity),
    (1.01, _deflate_garbage),
)


def _body_variants(rng: random.Random, raw: bytes) -> Variant:
    """An encoding of `raw`: (label, body, Content-Encoding, extra allowed statuses)."""
    roll = rng.random()
    packed = gzip.compress(raw, compresslevel=rng.choice((1, 6, 9)))
    encode = next(encode for bound, encode in _VARIANTS if roll < bound)
    return encode(_Body(rng, raw, packed))


_BOMB_CACHE: dict[int | str, bytes] = {}
"""Large bodies are built once and shared by every case that sends them."""


def bomb(inflated: int) -> bytes:
    """A gzip body of `inflated` zero bytes (256 MiB packs into about 255 KiB)."""
    if inflated not in _BOMB_CACHE:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        chunk = b"\0" * (1024 * 1024)
        parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
        _BOMB_CACHE[inflated] = b"".join(parts) + compressor.flush()
    return _BOMB_CACHE[inflated]


def _valid(rng: random.Random) -> Case:
    review, uid = _review(rng)
    raw = json.dumps(review).encode()
    label, body, encoding, extra = _body_variants(rng, raw)
    allowed = {200} | extra if extra != {415} else {415}
    if label in ("gzip-truncated", "gzip-corrupt", "gzip-garbage", "deflate-garbage"):
        allowed = {200, 400}  # a flipped byte can leave a valid stream; a cut can too
    if label in ("gzip-trailing", "gzip-twice"):
        allowed = {200, 400}
    if label == "gzip-gzip":
        allowed = {400, 415}
    return Case(f"valid/{label}", _request(body, encoding=encoding), frozenset(allowed), uid)


def _mutant(rng: random.Random) -> Case:
    raw, uid = _mutated(rng)
    label, body, encoding, extra = _body_variants(rng, raw)
    allowed = {200, 400} | extra
    if extra == {415}:
        allowed = {415}
    return Case(f"mutant/{label}", _request(body, encoding=encoding), frozenset(allowed), uid)


def _garbage_json(rng: random.Random) -> Case:
    review, _ = _review(rng)
    raw = json.dumps(review).encode()
    choice = rng.randrange(7)
    if choice == 0:
        body = raw[: rng.randrange(len(raw))]
    elif choice == 1:
        body = rng.randbytes(rng.randrange(1, 500))
    elif choice == 2:
        depth = rng.choice((100, 1000, 100_000))
        body = b'{"request": ' + b"[" * depth + b"]" * depth + b"}"
    elif choice == 3:
        body = raw.replace(b'"default"', b'"\xff\xfe"', 1)
    elif choice == 4:
        body = json.dumps(rng.choice(WEIRD)).encode()
    elif choice == 5:
        body = raw + b" trailing"
    else:
        body = b""
    label, packed, encoding, extra = _body_variants(rng, body)
    allowed = {415} if extra == {415} else {400} | (extra & {415})
    return Case(f"garbage/{label}", _request(packed, encoding=encoding), frozenset(allowed))


def _http_misuse(rng: random.Random) -> Case:
    review, _ = _review(rng)
    raw = json.dumps(review).encode()
    # An oversized body costs 4 MiB of TLS each way: one misuse in a hundred.
    choice = rng.choices(range(6), (20, 20, 20, 1, 20, 19))[0]
    if choice == 0:
        content_type = rng.choice(("text/plain", "application/x-www-form-urlencoded", None, "json"))
        return Case(
            "misuse/content-type", _request(raw, content_type=content_type), frozenset({415})
        )
    if choice == 1:
        method = rng.choice(("GET", "PUT", "DELETE", "PATCH"))
        return Case("misuse/method", _request(raw, method=method), frozenset({405}))
    if choice == 2:
        path = rng.choice(("/", "/mutate/", "/metrics", "/%ff", "/mutate?x=1"))
        allowed = {200} if path == "/mutate?x=1" else {404}
        return Case("misuse/path", _request(raw, path=path), frozenset(allowed), None)
    if choice == 3:
        if "oversized" not in _BOMB_CACHE:
            _BOMB_CACHE["oversized"] = _request(b" " * (MAX_BODY + 1))
        return Case("misuse/oversized", _BOMB_CACHE["oversized"], frozenset({413}))
    if choice == 4:
        return Case("misuse/health", _request(b"", method="GET", path="/healthz"), frozenset({200}))
    return Case(
        "misuse/charset",
        _request(raw, content_type="application/json; charset=utf-8"),
        frozenset({200}),
        review["request"]["uid"],
    )


def _bomb(rng: random.Random) -> Case:
    size = rng.choice((8, 64, 256)) * 1024 * 1024
    return Case(f"bomb/{size >> 20}MiB", _request(bomb(size), encoding="gzip"), frozenset({413}))


GENERATORS: tuple[tuple[float, Callable[[random.Random], Case]], ...] = (
    (0.50, _valid),
    (0.25, _mutant),
    (0.15, _garbage_json),
    (0.0995, _http_misuse),
    (0.0005, _bomb),
)


def corpus(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)  # noqa: S311  (a reproducible corpus, not a secret)
    weights = [weight for weight, _ in GENERATORS]
    makers = [maker for _, maker in GENERATORS]
    return [rng.choices(makers, weights)[0](rng) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cases = corpus(args.count, args.seed)
    kinds = Counter(case.kind for case in cases)
    for kind, number in sorted(kinds.items()):
        print(f"{number:7d}  {kind}")


if __name__ == "__main__":
    main()
