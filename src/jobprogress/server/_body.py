"""Reading request bodies under a byte bound, as they stream and once inflated; draining refused ones."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import anyio
from starlette.requests import ClientDisconnect

if TYPE_CHECKING:
    from starlette.types import Receive, Scope

__all__ = ["BodyError", "content_encoding", "declared_length", "drain", "drain_asgi", "read_bounded"]

_GZIP: Final = frozenset({"gzip", "x-gzip"})


class BodyError(Exception):
    """A request body the collector will not read; carries the status code and a client-facing detail."""

    def __init__(self, status_code: int, detail: str, *, within_limit: bool = True) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.within_limit = within_limit
        """False when the bytes received already passed the limit: the rest is not worth reading."""


def content_encoding(values: list[str]) -> str | None:
    """``"gzip"`` or None (identity) from the Content-Encoding header values.

    Raises:
        BodyError: 415 for any other coding, or for more than one layer of coding.
    """
    codings = [part.strip().lower() for value in values for part in value.split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _GZIP:
        return "gzip"
    raise BodyError(415, f"unsupported Content-Encoding {', '.join(codings)!r}; use gzip or none")


def declared_length(values: list[str]) -> int | None:
    """The Content-Length a client declared, or None.

    Raises:
        BodyError: 400 for a malformed or contradictory Content-Length.
    """
    if not values:
        return None
    distinct = {value.strip() for value in values}
    if len(distinct) != 1:
        raise BodyError(400, "contradictory Content-Length headers")
    text = distinct.pop()
    if not (text.isascii() and text.isdigit()):
        raise BodyError(400, "malformed Content-Length header")
    return int(text)


async def read_bounded(chunks: AsyncIterator[bytes], *, limit: int, encoding: str | None) -> bytes:
    """Collect a body from ``chunks``, refusing it once more than ``limit`` bytes arrived or inflated.

    The compressed stream is bounded by ``limit`` too, and inflation never produces more than
    ``limit + 1`` bytes, so a gzip bomb costs at most that much memory.

    Raises:
        BodyError: 413 over the limit; 400 for a corrupt or truncated gzip stream.
    """
    received = 0
    body = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise BodyError(413, f"request body is over the limit of {limit} bytes", within_limit=False)
        if inflater is None:
            body += chunk
            continue
        data = chunk
        while data:
            try:
                # max_length is >= 1 here: body never holds more than limit bytes at this point.
                body += inflater.decompress(data, limit + 1 - len(body))
            except zlib.error:
                raise BodyError(400, "request body is not valid gzip") from None
            if len(body) > limit:
                raise BodyError(413, f"request body inflates to more than the limit of {limit} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                # A gzip file may hold several members; anything else after the end is corrupt.
                data = inflater.unused_data
                if data:
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    if inflater is not None and not inflater.eof:
        raise BodyError(400, "request body is truncated gzip")
    return bytes(body)


async def drain(chunks: AsyncIterator[bytes], budget: int, timeout: float) -> bool:
    """Read and drop a request body we refuse, up to ``budget`` bytes; True when it ended within that.

    Answering before the body is read and then closing makes the kernel reset the connection, and the
    client may lose the answer with it; reading a small body first lets the answer arrive, and keeps
    the connection usable.
    """
    with anyio.move_on_after(timeout):  # nor may a trickling body hold the connection
        try:
            async for chunk in chunks:
                budget -= len(chunk)
                if budget < 0:
                    return False
        except ClientDisconnect:
            return False
        return True
    return False


async def drain_asgi(scope: Scope, receive: Receive, budget: int, timeout: float) -> bool:
    """:func:`drain` for a request no route has read from yet (the middleware's refusals)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > budget:
            return False
    return await drain(_asgi_chunks(receive), budget, timeout)


async def _asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
