"""``camloc serve``: the local web page and HTTP API (FastAPI + uvicorn).
Parse -> call :func:`camloc.web.server.serve` (which checks every option)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camloc.commands.options import DEFAULT_MODEL, Device, Head, Model, Weights

_Host = Annotated[str, typer.Option(help=(
    "Address to listen on (loopback unless told otherwise; other addresses get a warning)."))]
_Port = Annotated[int, typer.Option(help="Port (0 picks a free one; the URL is printed).")]
_Runs = Annotated[Path, typer.Option(help=(
    "Browse the evaluation runs (report.json) under this folder; nothing outside it is served."))]
_Fit = Annotated[str, typer.Option(help="stretch (default, as `camloc explain`) or crop.")]
_MaxBatch = Annotated[int, typer.Option(help="Most requests run in one forward pass (1..256).")]
_BatchWaitMs = Annotated[float, typer.Option(help=(
    "How long a pass waits for more requests (0..1000 ms)."))]
_MaxUploadMb = Annotated[float, typer.Option(help="Largest upload accepted (MiB, up to 1024).")]
_MaxPixels = Annotated[int, typer.Option(help=(
    "Largest image accepted (pixels, up to 100,000,000)."))]
_MaxDecodedMp = Annotated[float, typer.Option(help=(
    "Decoded pixels all requests may hold at once, in megapixels (0: twice --max-pixels; at "
    "least --max-pixels, up to 2000)."))]
_Runtime = Annotated[str, typer.Option(help=(
    "torch, onnx or an exported .onnx file: exact CAM (the model's layer) on onnxruntime, as "
    "`camloc explain --runtime`."))]
_Localizer = Annotated[str, typer.Option(help=(
    "A `camloc localizer fit` folder: requests may combine its foreground into the maps "
    "(the page's Localizer box; the API's localizer=true)."))]
_LogLevel = Annotated[str, typer.Option(help="uvicorn log level (info shows requests).")]


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: _Host = "127.0.0.1", port: _Port = 8765, model: Model = DEFAULT_MODEL,
        weights: Weights = "DEFAULT", head: Head = None, device: Device = "auto",
        runs: _Runs = None, fit: _Fit = "stretch", max_batch: _MaxBatch = 16,
        batch_wait_ms: _BatchWaitMs = 5.0, max_upload_mb: _MaxUploadMb = 20.0,
        max_pixels: _MaxPixels = 40_000_000, max_decoded_mp: _MaxDecodedMp = 0.0,
        runtime: _Runtime = "torch", log_level: _LogLevel = "warning",
        localizer: _Localizer = None,
    ) -> None:
        """Serve a web page and HTTP API: upload an image, see its maps and boxes.

        The model is loaded once; the server binds to 127.0.0.1 unless --host says otherwise.
        Ctrl-C stops it. API reference at /docs; see docs/ui.md.
        """
        from camloc.web.server import serve

        serve(host=host, port=port, model=model, weights=weights, head=head, device=device,
              runs=str(runs) if runs is not None else None, fit=fit, max_batch=max_batch,
              batch_wait_ms=batch_wait_ms, max_upload_mb=max_upload_mb, max_pixels=max_pixels,
              log_level=log_level, max_decoded_mp=max_decoded_mp, runtime=runtime,
              localizer=localizer)
