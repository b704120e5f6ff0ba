"""Two small ASGI guards in front of the application.

- :class:`BodyLimit` refuses a request body above a size, from its ``Content-Length`` before a
  byte is read, or while it streams in (chunked uploads), with ``413 {"error": ...}``.
- :class:`LoopbackHosts` answers only requests whose ``Host`` header names this machine
  (``127.0.0.1``, ``localhost``, ``[::1]``), so a web page on another site cannot reach a
  loopback server by DNS rebinding. It is off when the server is bound to another address on
  purpose (``--host``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyLimit", "LoopbackHosts"]

Scope = dict[str, Any]


async def _send_json(send: Any, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413)."""

    def __init__(self, app: Any, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        #: the upload limit the reason names (the body may carry some form fields more)
        self.upload_bytes = int(upload_bytes if upload_bytes is not None else max_bytes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        mb = self.upload_bytes / (1024 * 1024)
        reason = (f"request body exceeds the limit of {mb:g} MB for an upload (the server's "
                  f"--max-upload-mb)")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _send_json(send, 400, "Content-Length is not a number")
                return
            if n > self.max_bytes:
                await _send_json(send, 413, reason)
                return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge(reason)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_json(send, 413, reason)


class LoopbackHosts:
    """Answer only requests whose Host header is one of ``allowed`` (any port)."""

    def __init__(self, app: Any, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            if _host_name(host) not in self.allowed:
                if scope["type"] == "http":
                    await _send_json(send, 400, f"Host {host!r} is not served: this server answers "
                                                f"only {', '.join(sorted(self.allowed))}")
                return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name part of a Host header: ``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` -> ``[::1]``."""
    if host.startswith("["):
        return host[:host.index("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]
