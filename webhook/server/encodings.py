"""Request bodies in the content codings the webhook decodes, inflated up to a limit.

aiohttp's own decompression inflates a body while it arrives, however large it grows, and
answers a body it cannot decode with a 500 or a plain-text 400. It is turned off
(`auto_decompress=False`) and the handler decodes here instead: identity, gzip (or x-gzip)
and deflate (zlib-wrapped, or raw as some clients send it), one coding per body. Inflating
stops one byte past the limit, so a bomb costs the time to inflate the limit, never more, and
what is left of it is dropped without being inflated. The API server itself sends identity.
"""

from __future__ import annotations

import zlib
from typing import Literal

__all__ = ["ACCEPTED", "BodyError", "coding", "decode"]

Coding = Literal["gzip", "deflate"]
ACCEPTED = "gzip, deflate"
"""What a 415 answer advertises in Accept-Encoding (RFC 9110, 12.5.3)."""
_CODINGS: dict[str, Coding | None] = {
    "": None,
    "identity": None,
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
}


_GZIP_MAGIC = b"\x1f\x8b"


class BodyError(ValueError):
    """A body that cannot be decoded; `status` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def coding(header: str | None) -> Coding | None:
    """The coding a Content-Encoding header names; None for none. Raises BodyError(415)."""
    if header is None:
        return None
    try:
        return _CODINGS[header.strip().lower()]
    except KeyError:
        raise BodyError(
            415,
            f"Content-Encoding {header.strip()!r} is not supported; send the body as it is, "
            f"or with one of: {ACCEPTED}",
        ) from None


def decode(body: bytes, coding: Coding, limit: int) -> bytes:
    """`body` inflated; BodyError(413) past `limit` bytes, BodyError(400) if it is invalid."""
    if coding == "gzip":
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, "gzip", members=True)
    # RFC 9110's deflate is zlib-wrapped; some clients send raw deflate, as aiohttp accepts.
    wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
    return _inflate(body, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, limit, "deflate")


def _inflate(body: bytes, wbits: int, limit: int, name: str, *, members: bool = False) -> bytes:
    parts: list[bytes] = []
    size = 0
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise BodyError(400, f"the body is not valid {name}: {exc}") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise BodyError(413, f"the body inflates to more than {limit} bytes")
        parts.append(part)
        if not inflater.eof:
            raise BodyError(400, f"the body is truncated {name} (the stream does not end)")
        data = inflater.unused_data
        # gzip allows several members one after another (RFC 1952, 2.2); deflate has one.
        if not data or not members or not data.startswith(_GZIP_MAGIC):
            break
    if data:
        raise BodyError(400, f"the body has {len(data)} bytes after its {name} stream")
    return b"".join(parts)
