"""Binding and running the server (uvicorn) for ``camloc serve``.

The socket is bound here, before uvicorn starts, so a busy port is a clear error (exit 2) and
``port=0`` picks a free port; the address actually served is printed on one line
(``camloc serve: http://127.0.0.1:8765/ ...``) for people and for scripts that start the server.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import TextIO

from camloc.errors import ConfigError

__all__ = ["serve", "is_loopback", "bind"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or :class:`ConfigError` saying why not."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0..65535")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve ({exc.strerror})") from exc
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen ({exc.strerror or exc}); "
                          f"choose another port (0 picks a free one)") from exc
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, model: str = "efficientnet_lite0",
          weights: str | None = "DEFAULT", head: str | None = None, device: str = "auto",
          runs: str | None = None, fit: str = "stretch", max_batch: int = 16,
          batch_wait_ms: float = 5.0, max_upload_mb: float = 20.0, max_pixels: int = 40_000_000,
          log_level: str = "warning", out: TextIO | None = None,
          max_decoded_mp: float = 0.0, runtime: str = "torch",
          localizer: str | None = None) -> None:
    """Load the model once, bind ``host:port`` and serve until interrupted (Ctrl-C).

    The options are ``camloc serve``'s, bounded as it bounds them
    (:func:`camloc.web.limits.check_server_options`; :class:`ConfigError` otherwise).
    ``max_decoded_mp``: megapixels all requests may hold decoded at once (0: twice
    ``max_pixels``). ``runtime``: ``torch``, ``onnx`` or an exported ``.onnx`` file: exact CAM
    on the model's own layer runs on onnxruntime, as ``camloc explain --runtime`` does.
    ``localizer``: a ``camloc localizer fit`` folder (fitted on this model) that requests may
    switch on (``localizer=true``)."""
    import uvicorn

    from camloc.web.app import ServerSettings, create_app
    from camloc.web.engine import WebEngine
    from camloc.web.limits import check_server_options
    from camloc.web.runs import RunsIndex
    from camloc.web.uploads import UploadLimits

    out = out or sys.stderr
    check_server_options(max_batch=max_batch, batch_wait_ms=batch_wait_ms,
                         max_upload_mb=max_upload_mb, max_pixels=max_pixels,
                         max_decoded_mp=max_decoded_mp)
    if weights is not None and weights.lower() == "none":
        weights = None
    loc = None
    if localizer is not None:  # a bad folder is an error before the port is taken
        from camloc.localizer.model import load_localizer

        loc = load_localizer(localizer)
    if runs is not None:
        RunsIndex(runs)  # a missing folder is an error now, not at the first click
    loopback = is_loopback(host)
    if not loopback:
        print(f"warning: --host {host} is not a loopback address: anyone who can reach this "
              f"machine can use the server (no authentication, no TLS)", file=out, flush=True)
    sock = bind(host, port)
    try:
        engine = WebEngine.load(model, weights=weights, device=device, head=head, fit=fit,
                                runtime=runtime, localizer=loc)
        settings = ServerSettings(
            limits=UploadLimits(max_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels),
            max_batch=max_batch, max_wait_ms=batch_wait_ms,
            max_decoded_pixels=int(max_decoded_mp * 1e6),
            allowed_hosts=ServerSettings.allowed_hosts if loopback else None)
        app = create_app(engine, runs_dir=runs, settings=settings)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
        on = engine.device + ("" if engine.runtime == "torch" else f", runtime {engine.runtime}")
        on += f", localizer {localizer}" if loc is not None else ""
        print(f"camloc serve: http://{shown}:{bound[1]}/ (model {engine.name} on {on}"
              f"{', runs ' + str(runs) if runs else ''}; API docs at /docs; Ctrl-C stops)",
              file=out, flush=True)
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
