"""``camloc serve``: the local web page and HTTP API (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless told "
                                                   "otherwise; other addresses get a warning)."),
        port: int = typer.Option(8765, help="Port (0 picks a free one; the URL is printed)."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m",
                                  help="Model name (torchvision/timm), or a camloc model folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none' (random)."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        runs: Path = typer.Option(None, help="Browse the evaluation runs (report.json) under this "
                                             "folder; nothing outside it is served."),
        fit: str = typer.Option("stretch", help="stretch (default, as `camloc explain`) or crop."),
        max_batch: int = typer.Option(16, help="Most requests run in one forward pass (1..256)."),
        batch_wait_ms: float = typer.Option(5.0, help="How long a pass waits for more requests (0..1000 ms)."),
        max_upload_mb: float = typer.Option(20.0, help="Largest upload accepted (MiB, up to 1024)."),
        max_pixels: int = typer.Option(40_000_000, help="Largest image accepted (pixels, up to 100,000,000)."),
        max_decoded_mp: float = typer.Option(
            0.0, help="Decoded pixels all requests may hold at once, in megapixels (0: twice "
                      "--max-pixels; at least --max-pixels, up to 2000)."),
        runtime: str = typer.Option("torch", help="torch, onnx or an exported .onnx file: exact "
                                                  "CAM (the model's layer) on onnxruntime, as "
                                                  "`camloc explain --runtime`."),
        log_level: str = typer.Option("warning", help="uvicorn log level (info shows requests)."),
    ) -> None:
        """Serve a web page and HTTP API: upload an image, see its maps and boxes.

        The model is loaded once; the server binds to 127.0.0.1 unless --host says otherwise.
        Ctrl-C stops it. API reference at /docs; see docs/ui.md.
        """
        from camloc.web.limits import check_server_options

        check_server_options(max_batch=max_batch, batch_wait_ms=batch_wait_ms,
                             max_upload_mb=max_upload_mb, max_pixels=max_pixels,
                             max_decoded_mp=max_decoded_mp)
        from camloc.web.server import serve

        serve(host=host, port=port, model=model,
              weights=None if weights.lower() == "none" else weights, head=head, device=device,
              runs=str(runs) if runs is not None else None, fit=fit, max_batch=max_batch,
              batch_wait_ms=batch_wait_ms, max_upload_mb=max_upload_mb, max_pixels=max_pixels,
              log_level=log_level, max_decoded_mp=max_decoded_mp, runtime=runtime)
