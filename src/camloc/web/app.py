"""The FastAPI application behind ``camloc serve``: the page, the HTTP API, the runs browser.

Every error a client can cause is answered as JSON ``{"error": reason}`` with a 4xx code; an
unexpected failure is a 500 with a one-line reason (the traceback goes to the server's log, never
to the client). OpenAPI docs are at ``/docs``.

>>> from fastapi.testclient import TestClient          # doctest: +SKIP
>>> client = TestClient(create_app(WebEngine.load()))   # doctest: +SKIP
>>> client.get("/api/health").json()["status"]          # doctest: +SKIP
'ok'
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from camloc.errors import CamlocError
from camloc.web.batcher import MicroBatcher, QueueFull
from camloc.web.encode import MAP_ENCODINGS, boxes_on_sent_map, encode_maps, encode_raw_maps
from camloc.web.engine import DEFAULT_LAYER, ExplainJob, WebEngine
from camloc.web.guard import BodyLimit, LoopbackHosts
from camloc.web.jobs import JOB_ID, Cancelled, Jobs
from camloc.web.runs import PathRefused, RunsIndex, safe_join
from camloc.web.uploads import (
    PixelBudget, UploadLimits, UploadRejected, check_resize, decode_upload, peek_size)

__all__ = ["create_app", "ServerSettings", "ApiError"]

log = logging.getLogger("camloc.web")
MAX_CLASSES_PER_REQUEST = 50
SLOW_QUEUE = 8  # slow requests waiting at most (503 beyond)
MAX_BATCH_IMAGES = 64  # photos in one batch upload
BATCH_KEY = "__batch__"  # the slow lane's key for a batch upload's run
BATCH_FOLDER = "uploads"  # where batch runs are written, under --runs DIR
RUNS_THREADS = 4  # threads reading runs (never the pool that decodes uploads)
RUNS_TIMEOUT_S = 20.0
# The pages load nothing from elsewhere and cannot be framed by another site.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
}
_RUN = "a run's folder, relative to --runs DIR (as /api/runs lists it)"
_IMAGE_ID = "an image id of the dataset the run's report names"


_ERROR_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
_EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **_ERROR_BODY} for code, text in (
        (400, "a bad value (unknown method, layer or class; an undecodable image; a broken form)"),
        (409, "the request was cancelled (DELETE /api/jobs/{job})"),
        (413, "the upload is larger than the server accepts (bytes or pixels)"),
        (415, "not an image (JPEG, PNG, GIF, BMP, WebP or TIFF content)"),
        (422, "a missing or out-of-range field"),
        (503, "the server is busy (too many requests waiting); retry shortly"))}


class ApiError(Exception):
    """A client error: answered as ``{"error": reason}`` with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ServerSettings:
    """What the server accepts: upload limits, batching, which Host headers (``None``: any)."""

    limits: UploadLimits = UploadLimits()
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "[::1]")
    #: decoded pixels held at once by all requests (0: twice ``limits.max_pixels``)
    max_decoded_pixels: int = 0

    def __post_init__(self) -> None:
        """The same bounds as ``camloc serve``'s options (:func:`check_server_options`):
        :class:`~camloc.errors.ConfigError` naming the first one out of bounds."""
        from camloc.web.limits import check_server_options

        check_server_options(max_batch=self.max_batch, batch_wait_ms=self.max_wait_ms,
                             max_upload_mb=self.limits.max_bytes / (1024 * 1024),
                             max_pixels=self.limits.max_pixels,
                             max_decoded_mp=self.max_decoded_pixels / 1e6)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _parse_classes(text: str, names: list[str]) -> list[int]:
    """``"285, 281"`` or ``"tabby;Egyptian cat"`` -> ids, as ``camloc explain --classes`` reads them."""
    from camloc.data.classes import parse_classes

    ids = parse_classes(text, names, option="classes") or []
    if not ids:
        raise ApiError(400, "classes: no class given")
    if len(ids) > MAX_CLASSES_PER_REQUEST:
        raise ApiError(400, f"classes: at most {MAX_CLASSES_PER_REQUEST} per request")
    return ids


def _parse_target(text: str, names: list[str]) -> tuple[Any, str]:
    """``"margin:CLASS"`` or ``"margin:CLASS:OTHER"`` (ids or names) -> the
    :class:`~camloc.targets.Margin` and its canonical text (``"margin:281:285"``)."""
    from camloc.data.classes import parse_classes
    from camloc.targets import Margin

    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind.strip().lower() != "margin" or not 1 <= len(parts) <= 2:
        raise ApiError(400, f"target={text!r}: expected 'margin:CLASS' or 'margin:CLASS:OTHER' "
                            f"(a class id or name)")
    ids = []
    for part in parts:
        # one class per part: ";" makes a name with commas ("tabby, tabby cat") one item
        found = parse_classes(part + ";", names, option="target") or []
        if len(found) != 1:
            raise ApiError(400, f"target={text!r}: expected one class in {part!r}, got "
                                f"{len(found)}")
        ids.append(found[0])
    if len(ids) == 2 and ids[0] == ids[1]:
        raise ApiError(400, f"target={text!r}: a class cannot lead itself; name another class")
    if len(ids) == 1 and len(names) < 2:
        raise ApiError(400, "target: a model with one class has no other class to lead")
    return Margin(ids[0], against=ids[1] if len(ids) == 2 else None), \
        "margin:" + ":".join(map(str, ids))


def create_app(engine: WebEngine, runs_dir: str | None = None,
               settings: ServerSettings = ServerSettings()) -> FastAPI:
    """Build the application around a loaded engine (and, optionally, a runs folder)."""
    runs = RunsIndex(runs_dir) if runs_dir else None
    names = engine.class_names
    engine.methods()
    engine.layers()  # found now (a dry forward pass, maybe), never while a batch runs
    scratch: dict[str, str | None] = {"dir": None}  # where uploads are decoded, while serving

    def run_batch(key: tuple[str, ...], jobs: list[Any]) -> list[Any]:
        """One pass of a lane: results with the seconds the pass took (never the queueing)."""
        method, layer, tta, *rest = key
        localized = bool(rest and rest[0])
        if method == BATCH_KEY:
            return [_run_upload_batch(engine, jobs[0])]
        followed = jobs[0].progress if len(jobs) == 1 else None
        if followed is not None:
            followed.start()
        t0 = time.perf_counter()
        try:
            if localized:
                results = engine.explain(method, layer or None, jobs, tta=tta, localizer=True)
            else:
                results = engine.explain(method, layer or None, jobs, tta=tta) if tta else \
                    engine.explain(method, layer or None, jobs)
        except BaseException:
            if followed is not None:
                followed.finish("cancelled" if followed.cancel_event.is_set() else "failed")
            raise
        seconds = time.perf_counter() - t0
        if followed is not None:
            followed.finish("done")
            sel = jobs[0].selection
            engine.learn(method, layer, sel if isinstance(sel, int) else len(sel), seconds)
        return [(r, seconds) for r in results]

    # Two lanes, each with its own worker thread: CAM, the gradient family and Eigen-CAM (one pass
    # and k backward) never wait behind the slow methods (a pass per channel or noise sample:
    # Score-CAM, Ablation-CAM, Smooth Grad-CAM++), which run one request at a time, followed and
    # cancellable (camloc.web.jobs).
    batcher = MicroBatcher(run_batch, max_batch=settings.max_batch,
                           max_wait=settings.max_wait_ms / 1000.0, max_queue=settings.max_queue)
    slow_lane = MicroBatcher(run_batch, max_batch=1, max_wait=0.0, max_queue=SLOW_QUEUE)
    jobs = Jobs()
    auto_ids = itertools.count(1)
    slow_methods = {m["name"] for m in engine.methods() if m.get("slow")}
    started = time.time()
    # Requests holding a decoded image at once (decode -> forward -> answer): enough to fill two
    # batches, few enough that a burst of huge images cannot exhaust memory.
    inflight = asyncio.Semaphore(max(4, 2 * settings.max_batch))
    # ... and at most this many decoded pixels among them (the memory ceiling of docs/ui.md)
    pixels = PixelBudget(settings.max_decoded_pixels or 2 * settings.limits.max_pixels)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="camloc-serve-") as tmp:
            scratch["dir"] = tmp
            await batcher.start()
            await slow_lane.start()
            try:
                yield
            finally:
                for job_id in list(jobs.ids()):
                    jobs.cancel(job_id)
                await slow_lane.close()
                await batcher.close()
                runs_pool.shutdown(wait=False, cancel_futures=True)
                scratch["dir"] = None

    app = FastAPI(title="camloc", version=_version(), lifespan=lifespan, docs_url=None,
                  redoc_url=None,  # FastAPI's own pages load their scripts from a CDN
                  description="Class activation maps and boxes for uploaded images; the evaluation "
                              "runs browser. Errors are JSON: {\"error\": reason}.")

    # ------------------------------------------------------------------ errors as JSON
    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.reason)

    @app.exception_handler(UploadRejected)
    async def _upload_error(_r: Request, exc: UploadRejected) -> JSONResponse:
        return _error(exc.status, exc.reason)

    @app.exception_handler(PathRefused)
    async def _path_error(_r: Request, exc: PathRefused) -> JSONResponse:
        return _error(exc.status, exc.reason)

    @app.exception_handler(CamlocError)
    async def _camloc_error(_r: Request, exc: CamlocError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(QueueFull)
    async def _busy(_r: Request, exc: QueueFull) -> JSONResponse:
        return _error(503, f"server busy: {exc}; retry shortly")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
            msg = err.get("msg", "invalid")
            if where == "image" and err.get("type") == "missing":
                kind = request.headers.get("content-type", "")
                msg = ("no file part named 'image' in the multipart form (send the picture as "
                       "image=@photo.jpg)" if kind.startswith("multipart/form-data") else
                       f"send a multipart/form-data body with the picture as its 'image' part "
                       f"(got {kind.split(';')[0] or 'no content type'})")
            parts.append(f"{where}: {msg}")
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 400 and "parsing the body" in reason:
            reason = "the request body is not valid multipart form data"
        return _error(exc.status_code, reason)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    # ------------------------------------------------------------------ the page
    static = resources.files("camloc.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html", headers=_PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> FileResponse:
        """The API reference, rendered from /openapi.json by the page itself (works offline)."""
        return FileResponse(str(static / "apidocs.html"), media_type="text/html",
                            headers=_PAGE_HEADERS)

    # ------------------------------------------------------------------ API
    @app.get("/api/health", summary="Server status, model, and micro-batching counters")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": _version(), "model": engine.name, "device": engine.device,
                "runtime": engine.runtime,
                "num_classes": len(names), "input_size": list(engine.input_size),
                "all_class_maps": engine.has_exact_cam, "runs": runs is not None,
                "localizer": _localizer_info(engine),
                "uptime_s": round(time.time() - started, 1), "batching": batcher.stats(),
                "slow_lane": slow_lane.stats(),
                "limits": {"max_bytes": settings.limits.max_bytes,
                           "max_pixels": settings.limits.max_pixels,
                           "max_decoded_pixels": pixels.cap},
                "decoded_pixels": {"held": pixels.used, "peak": pixels.peak}}

    @app.get("/api/classes", summary="The model's classes (id, name); q filters by name")
    async def classes(q: str = Query("", max_length=200, description="case-insensitive substring"),
                      limit: int = Query(0, ge=0, description="at most this many (0: all)")
                      ) -> dict[str, Any]:
        ql = q.lower().strip()
        out = [{"id": i, "name": n} for i, n in enumerate(names) if not ql or ql in n.lower()]
        return {"count": len(names), "classes": out[:limit] if limit else out}

    @app.get("/api/methods", summary="Map methods (with metadata) and the layers one may choose")
    async def methods() -> dict[str, Any]:
        methods_ = await run_in_threadpool(engine.methods)
        layers = await run_in_threadpool(engine.layers)
        return {"methods": methods_, "layers": layers, "default_method": "cam",
                "default_layer": DEFAULT_LAYER, "map_encodings": list(MAP_ENCODINGS)}

    @app.post("/api/explain", summary="Explain one image: classes, probabilities, maps and boxes",
              responses=_EXPLAIN_ERRORS)
    async def explain(
        request: Request,
        image: UploadFile = File(..., description="the image (JPEG, PNG, GIF, BMP, WebP, TIFF)"),
        method: str = Form("cam", description="a method from /api/methods"),
        layer: str = Form(DEFAULT_LAYER, description="a layer from /api/methods, or any layer name of the model "
                                "(e.g. layer3, blocks.11); '' = the model's default"),
        top_k: int = Form(5, ge=1, le=MAX_CLASSES_PER_REQUEST,
                          description="explain the k most likely classes"),
        classes: str = Form("", description="ids or names instead of top-k: '285,281' or "
                                            "'tabby;tiger cat'"),
        threshold: float = Form(0.2, ge=0.0, le=1.0, allow_inf_nan=False,
                                description="box threshold, a fraction of the map maximum"),
        multi: bool = Form(False, description="also box every connected component"),
        maps: str = Form("f16", description="map payload: f16, f32, png or none"),
        all_maps: bool = Form(False, description="also send every class's raw low-resolution map "
                                                 "(float16), for the point lookup"),
        job: str = Form("", max_length=64, description="a name for this request, to follow a slow "
                                                        "method's progress (GET /api/jobs/{job}) "
                                                        "and cancel it (DELETE)"),
        tta: str = Form("", max_length=200, description="test-time augmentation, as camloc "
                                                        "explain --tta: 'flip', 'scales=224:288', "
                                                        "'flip,scales=224:288,logits'; '' or "
                                                        "'none': off"),
        target: str = Form("", max_length=400, description="instead of classes: 'margin:CLASS' "
                                                           "(how far CLASS leads the best other "
                                                           "class) or 'margin:CLASS:OTHER' (ids "
                                                           "or names)"),
        localizer: bool = Form(False, description="combine the server's --localizer foreground "
                                                  "into the maps (min-max maps, boxes at its "
                                                  "threshold)"),
    ) -> dict[str, Any]:
        if maps not in MAP_ENCODINGS:
            raise ApiError(400, f"maps={maps!r}: expected one of {', '.join(MAP_ENCODINGS)}")
        if all_maps and not engine.has_exact_cam:
            raise ApiError(400, "all_maps: this model has no GAP -> linear head, so every class's "
                                "map cannot come from one forward pass")
        await run_in_threadpool(engine.check, method, layer)
        tta = _tta_text(tta)
        loc = getattr(engine, "localizer", None) if localizer else None
        if localizer and loc is None:
            raise ApiError(400, "localizer: this server was started without --localizer")
        if loc is not None and loc.threshold is not None:
            threshold = float(loc.threshold)  # the threshold the localizer's maps were tuned with
        selection: int | list[int] = _parse_classes(classes, names) if classes.strip() else top_k
        margin, target = _parse_target(target, names) if target.strip() else (None, "")
        if margin is not None:
            from camloc.cams.catalog import CATALOG

            if classes.strip():
                raise ApiError(400, "target: give target or classes, not both")
            info = CATALOG.get(method.strip().lower())
            if info is not None and info.family == "exact":
                raise ApiError(400, f"target: {method!r} maps class logits through the classifier "
                                    f"only; choose a gradient or perturbation method for a margin")
            selection = 1
        slow = method in slow_methods
        tracked = None
        if slow and not job:  # followed all the same (Cancel on hang-up), under a private name
            job = f"auto-{next(auto_ids)}"
        if job:
            if not JOB_ID.fullmatch(job):
                raise ApiError(400, "job: 1 to 64 letters, digits, '-' or '_'")
            if slow:
                k = selection if isinstance(selection, int) else len(selection)
                est = await run_in_threadpool(engine.estimate, method, layer, k)
                try:
                    tracked = jobs.create(job, method, est["seconds"], est["passes"])
                except ValueError as exc:
                    raise ApiError(409, str(exc)) from exc
        data = await image.read()
        held = 0
        try:
            async with inflight:
                w, h = await run_in_threadpool(peek_size, data, settings.limits)
                need = check_resize(w, h, engine.preprocess, settings.limits.max_pixels)
                held = await pixels.acquire(need)
                pil = await run_in_threadpool(decode_upload, data, settings.limits, scratch["dir"])
                del data
                t0 = time.perf_counter()
                lane = slow_lane if slow else batcher
                key = (method, layer, tta, "localizer") if loc is not None else (method, layer, tta)
                submitted = lane.submit(
                    key, ExplainJob(pil, selection, all_maps, progress=tracked, target=margin))
                if tracked is None:
                    result, seconds = await submitted
                else:
                    result, seconds = await _unless_cancelled(submitted, tracked, request)
                queued = time.perf_counter() - t0 - seconds
                del pil
                answer = await run_in_threadpool(_response, engine, result, threshold, multi,
                                                 maps, seconds, layer, queued)
                answer["tta"] = tta or "none"
                answer["target"] = target or None
                answer["localizer"] = loc is not None
                if loc is not None:
                    answer["normalization"] = "minmax"
                return answer
        except Cancelled as exc:
            raise ApiError(409, f"{exc}") from exc
        finally:
            if held:
                await pixels.release(held)
            if tracked is not None and tracked.state in ("queued", "running"):
                tracked.cancel_event.set()  # never started (a refused upload, the queue full)
                tracked.finish("cancelled")

    batch_ids = itertools.count(1)
    background: set[asyncio.Task[Any]] = set()

    @app.post("/api/batch", status_code=202, responses=_EXPLAIN_ERRORS,
              summary="Several photos -> a small explain run under --runs DIR (followed as a job)")
    async def batch(
        images: list[UploadFile] = File(..., description="the photos (at most 64; together at "
                                                         "most the upload limit)"),
        method: str = Form("cam", description="a method from /api/methods"),
        layer: str = Form(DEFAULT_LAYER, description="a layer from /api/methods; '' = the model's"),
        top_k: int = Form(5, ge=1, le=MAX_CLASSES_PER_REQUEST,
                          description="explain the k most likely classes of each photo"),
        threshold: float = Form(0.2, ge=0.0, le=1.0, allow_inf_nan=False,
                                description="box threshold, a fraction of the map maximum"),
        tta: str = Form("", max_length=200, description="test-time augmentation (as in "
                                                        "/api/explain)"),
    ) -> dict[str, Any]:
        idx = need_runs()
        tta = _tta_text(tta)
        if len(images) > MAX_BATCH_IMAGES:
            raise ApiError(400, f"images: at most {MAX_BATCH_IMAGES} photos in one batch "
                                f"(got {len(images)})")
        await run_in_threadpool(engine.check, method, layer)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_id = f"{BATCH_FOLDER}/batch-{stamp}-{next(batch_ids)}"
        folder = idx.root / run_id
        payloads = [(_upload_name(i, f.filename), await f.read()) for i, f in enumerate(images)]
        paths = await run_in_threadpool(_save_uploads, folder, payloads)
        job_id = run_id.replace("/", "-")
        tracked = jobs.create(job_id, method, None, len(paths))
        tracked.extra.update({"run": run_id, "images": len(paths), "done": 0, "failed": 0})
        job = _UploadBatch(paths, str(folder), method, layer, top_k, threshold, tracked, tta)

        async def follow() -> None:
            try:
                await slow_lane.submit((BATCH_KEY, run_id, ""), job)
            except Exception as exc:  # noqa: BLE001 - the job's state says it; the log has why
                if tracked.state in ("queued", "running"):
                    tracked.finish("failed")
                tracked.extra["error"] = str(exc) or type(exc).__name__
                if not isinstance(exc, (Cancelled, CamlocError)):
                    log.exception("batch %s failed", run_id)

        task = asyncio.ensure_future(follow())
        background.add(task)
        task.add_done_callback(background.discard)
        return {"job": job_id, "run": run_id, "images": len(paths),
                "state_url": f"/api/jobs/{job_id}"}

    @app.get("/api/estimate", summary="Before explaining: which lane, expected passes, seconds")
    async def estimate(method: str = Query("cam", max_length=100),
                       layer: str = Query(DEFAULT_LAYER, max_length=300),
                       top_k: int = Query(5, ge=1, le=MAX_CLASSES_PER_REQUEST)) -> dict[str, Any]:
        await run_in_threadpool(engine.check, method, layer)
        out = await run_in_threadpool(engine.estimate, method, layer, top_k)
        out["waiting"] = slow_lane.stats()["waiting"] + (1 if jobs.running() else 0) \
            if out["slow"] else 0
        return out

    @app.get("/api/jobs/{job}", summary="A slow request's state: queued, running (progress), done")
    async def job_state(job: str = Path(..., max_length=64)) -> dict[str, Any]:
        tracked = jobs.get(job)
        if tracked is None:
            raise ApiError(404, f"job={job!r}: no such request (only slow methods are followed)")
        return tracked.to_dict()

    @app.delete("/api/jobs/{job}", summary="Cancel a slow request (it answers 409)")
    async def job_cancel(job: str = Path(..., max_length=64)) -> dict[str, Any]:
        if not jobs.cancel(job):
            tracked = jobs.get(job)
            if tracked is None:
                raise ApiError(404, f"job={job!r}: no such request")
            return tracked.to_dict()
        return jobs.get(job).to_dict()  # type: ignore[union-attr]

    # ------------------------------------------------------------------ runs browser
    # Reading runs happens in its own few threads, each read bounded in time: a file that blocks
    # (a FIFO is refused before that, a hung network disk is not) never takes the threads that
    # decode uploads.
    runs_pool = ThreadPoolExecutor(max_workers=RUNS_THREADS, thread_name_prefix="camloc-runs")

    async def in_runs_pool(fn: Any, *args: Any) -> Any:
        fut = asyncio.get_running_loop().run_in_executor(runs_pool, fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), RUNS_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(504, f"reading the run took more than {RUNS_TIMEOUT_S:g} s") from None

    def need_runs() -> RunsIndex:
        if runs is None:
            raise ApiError(404, "no runs folder: start the server with --runs DIR")
        return runs

    @app.get("/api/runs", summary="Evaluation runs found under --runs DIR")
    async def list_runs() -> dict[str, Any]:
        idx = need_runs()
        return {"root": idx.root.name, "runs": await in_runs_pool(idx.list_runs)}

    @app.get("/api/runs/report", summary="One run: report, figures, per-image records")
    async def run_report(run: str = Query(..., max_length=1000, description=_RUN)) -> dict[str, Any]:
        return await in_runs_pool(need_runs().run, run)

    @app.get("/api/runs/compare", summary="Two runs side by side: curves, per-image IoU changes")
    async def run_compare(a: str = Query(..., max_length=1000, description=_RUN),
                          b: str = Query(..., max_length=1000, description=_RUN)
                          ) -> dict[str, Any]:
        return await in_runs_pool(need_runs().compare, a, b)

    @app.get("/api/runs/image", summary="One image of a run: ground-truth and predicted boxes")
    async def run_image(run: str = Query(..., max_length=1000, description=_RUN),
                        image_id: str = Query(..., max_length=1000, description=_IMAGE_ID)
                        ) -> dict[str, Any]:
        info = await in_runs_pool(need_runs().image_info, run, image_id)
        query = _query(run=run, image_id=image_id)
        if info.get("kind") != "explain":
            info["url"] = app.url_path_for("run_image_jpeg") + "?" + query
        for m in info.get("saved_maps") or []:
            if m["url"] is None:
                m["url"] = app.url_path_for("run_map_png") + "?" + query
        return info

    @app.get("/api/runs/map.png", name="run_map_png",
             summary="One image's saved map (scoremaps/ of an evaluation, maps/ of an explain run)")
    async def run_map_png(run: str = Query(..., max_length=1000, description=_RUN),
                          image_id: str = Query(..., max_length=1000, description=_IMAGE_ID)
                          ) -> Response:
        data = await in_runs_pool(need_runs().map_png, run, image_id)
        return Response(data, media_type="image/png", headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/api/runs/image.jpg", name="run_image_jpeg", summary="One image of a run, as JPEG")
    async def run_image_jpeg(run: str = Query(..., max_length=1000, description=_RUN),
                             image_id: str = Query(..., max_length=1000, description=_IMAGE_ID)
                             ) -> Response:
        data = await in_runs_pool(need_runs().image_jpeg, run, image_id)
        return Response(data, media_type="image/jpeg",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"})

    @app.get("/runs/files/{path:path}", summary="A file under --runs DIR (nothing outside it)")
    async def run_file(path: str = Path(..., description="relative to --runs DIR")) -> FileResponse:
        target = safe_join(need_runs().root, path)
        if not target.is_file():
            raise ApiError(404, f"{path!r} is not a file")
        headers = {"X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                                              "style-src 'unsafe-inline'"}
        return FileResponse(str(target), headers=headers)

    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_bytes + 64 * 1024,
                       upload_bytes=settings.limits.max_bytes)
    if settings.allowed_hosts is not None:
        app.add_middleware(LoopbackHosts, allowed=settings.allowed_hosts)
    return app


@dataclass
class _UploadBatch:
    """A batch upload waiting in the slow lane: its saved photos and the run to write."""

    paths: list[str]
    out: str
    method: str
    layer: str
    top_k: int
    threshold: float
    progress: Any
    tta: str = ""


def _run_upload_batch(engine: WebEngine, job: _UploadBatch) -> tuple[Any, float]:
    """The batch's run (in the slow lane's thread): the library's ``run_explain``, followed."""
    tracked = job.progress
    tracked.start()
    t0 = time.perf_counter()
    try:
        summary = engine.run_folder(job.paths, job.out, job.method, job.layer or None,
                                    job.top_k, job.threshold, progress=tracked, tta=job.tta)
    except BaseException:
        tracked.finish("cancelled" if tracked.cancel_event.is_set() else "failed")
        raise
    tracked.extra.update({"done": summary.done, "failed": len(summary.failed)})
    tracked.passes = summary.total
    tracked.finish("done")
    return summary, time.perf_counter() - t0


def _localizer_info(engine: Any) -> dict[str, Any] | None:
    """What /api/health says of the server's localizer (None: started without one)."""
    loc = getattr(engine, "localizer", None)
    if loc is None:
        return None
    return {"key": loc.key, "kind": loc.kind, "combine": loc.combine, "threshold": loc.threshold,
            "tta": loc.tta}


def _tta_text(text: str) -> str:
    """A ``tta`` field -> its canonical text (``""``: none), or a 400 naming the field."""
    from camloc.cams.tta import parse_tta
    from camloc.errors import ConfigError

    try:
        spec = parse_tta(text)
    except ConfigError as exc:
        raise ApiError(400, str(exc).replace("--tta ", "tta=").replace("TTA scales", "tta: scales")
                       ) from exc
    return "" if spec is None else spec.describe()


def _upload_name(i: int, filename: str | None) -> str:
    """A safe file name for the ``i``-th photo of a batch (its own name kept where it can be)."""
    import re
    from pathlib import PurePath

    base = PurePath((filename or "").replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:80] or "image"
    return f"{i + 1:03d}-{base}"


def _save_uploads(folder: Any, payloads: list[tuple[str, bytes]]) -> list[str]:
    """Write a batch's photos under ``folder/inputs`` (atomically); their paths."""
    from camloc.io import atomic_write_bytes

    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=False)
    paths = []
    for name, data in payloads:
        atomic_write_bytes(inputs / name, data)
        paths.append(str(inputs / name))
    return paths


async def _unless_cancelled(submitted: Any, tracked: Any, request: Request) -> Any:
    """Await a slow lane's answer. A request cancelled while still queued answers at once (it
    leaves the queue) instead of when the request ahead of it is done; a client that hangs up
    cancels its request (a closed tab never keeps the slow lane busy)."""
    task = asyncio.ensure_future(submitted)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if not tracked.cancel_event.is_set() and await request.is_disconnected():
            tracked.cancel_event.set()
        if tracked.cancel_event.is_set() and tracked.state == "queued":
            task.cancel()
            raise Cancelled(f"request {tracked.id!r} was cancelled")


def _query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _version() -> str:
    from camloc import __version__

    return __version__


def _response(engine: WebEngine, r: Any, threshold: float, multi: bool, encoding: str,
              seconds: float, layer: str, queued: float = 0.0) -> dict[str, Any]:
    payload, decoded = encode_maps(r.maps, encoding)
    out_classes = []
    for j, cid in enumerate(r.class_ids):
        box, comps = boxes_on_sent_map(decoded[j], threshold, multi, r.geometry)
        entry = {"id": cid, "name": r.class_names[j], "prob": r.probs[j], "logit": r.logits[j],
                 "box": box}
        if comps is not None:
            entry["boxes"] = comps
        out_classes.append(entry)
    g = r.geometry
    resp: dict[str, Any] = {
        "model": engine.name, "method": r.method, "layer": layer,
        "layers": list(getattr(r, "layers", []) or []), "threshold": threshold,
        "multi": multi, "normalization": "max",
        "box_convention": "x0, y0, x1, y1: continuous pixel edges in original image pixels",
        "image": {"width": g.width, "height": g.height},
        "geometry": {"input_width": g.input_width, "input_height": g.input_height,
                     "scale_x": g.scale_x, "scale_y": g.scale_y,
                     "offset_x": g.offset_x, "offset_y": g.offset_y},
        "classes": out_classes, "maps": payload, "seconds": round(seconds, 4),
        "queued_seconds": round(max(queued, 0.0), 4),
    }
    if r.all_maps is not None:
        resp["all_maps"] = encode_raw_maps(r.all_maps)
    return resp
