"""``camloc serve``: a local web page and HTTP API over the camloc engine.

The pieces, each small and named for what it holds:

- :mod:`camloc.web.engine`: the ONE module that calls the CAM engine (methods, layers, a batch of
  explanations, all-class maps). Adapt it, and only it, when the engine changes.
- :mod:`camloc.web.batcher`: an asyncio micro-batcher that runs concurrent requests with the same
  method and layer in one forward pass, in a worker thread.
- :mod:`camloc.web.uploads`: upload limits, content sniffing and decoding (with camloc's own
  :func:`~camloc.data.images.load_image`).
- :mod:`camloc.web.encode`: maps as float16/float32/PNG payloads, and boxes computed on exactly
  the map values sent.
- :mod:`camloc.web.runs`: the evaluation-runs browser, which never serves a path outside its folder.
- :mod:`camloc.web.app`: the FastAPI application; :mod:`camloc.web.server`: binding and running it.
- ``static/``: the page (plain HTML, CSS and JavaScript; no build step, no CDN).

>>> from camloc.web import create_app   # doctest: +SKIP
>>> app = create_app(WebEngine.load("efficientnet_lite0"))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:  # lazy: importing camloc.web must not import torch or FastAPI
    if name == "create_app":
        from camloc.web.app import create_app

        return create_app
    if name == "serve":
        from camloc.web.server import serve

        return serve
    raise AttributeError(f"module 'camloc.web' has no attribute {name!r}")
