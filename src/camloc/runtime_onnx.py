"""Exact CAM run by onnxruntime: the graph of :func:`camloc.export.to_onnx` behind the CAM call.

:class:`OnnxCAM` is a drop-in for :class:`~camloc.cams.CAM`: ``engine(x, classes=...)`` returns
the same :class:`~camloc.cams.CamOutput` (logits, class ids, raw maps at the feature grid, the
per-image bias), so explain and evaluate take it wherever they take a method. It reads an
exported file, or exports the model to a cache on first use (``$CAMLOC_CACHE/onnx``, default
``~/.cache/camloc/onnx``; the key digests the weights, the input size and the versions). The
torch model still provides the spec (preprocessing, class names) and is checked against the
graph once: their logits must agree on a probe input.

Providers: CUDA when onnxruntime has it and the model is on a GPU, else the CPU, with as many
threads as torch uses (``torch.get_num_threads()``).

>>> import torch, camloc                                                 # doctest: +SKIP
>>> engine = OnnxCAM(camloc.load_model())                                # doctest: +SKIP
>>> engine(torch.randn(2, 3, 224, 224), classes=5).maps.shape            # doctest: +SKIP
torch.Size([2, 5, 7, 7])
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camloc.cams.engine import ClassSelection, CamOutput, select_classes
from camloc.targets import ClassTarget, Target
from camloc.cams.exact import CAM
from camloc.errors import ConfigError, ModelError
from camloc.models.loader import CamModel
from camloc.models.pooling import global_pool

__all__ = ["OnnxCAM", "RUNTIMES", "cache_dir", "cached_export", "make_runtime_engine", "make_session"]

RUNTIMES = ("torch", "onnx")


def make_session(model: str | os.PathLike[str] | bytes, cuda: bool = False) -> Any:
    """An onnxruntime ``InferenceSession`` on a file or serialized graph (CPU; CUDA first when
    ``cuda`` and onnxruntime has it), with torch's thread count."""
    from camloc.export.onnx import require_onnx

    require_onnx("--runtime onnx", ("onnxruntime",))
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the 'classes' default is meant to be overridable
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3  # no warnings about the 'classes' default on stderr
    providers = ["CPUExecutionProvider"]
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        where = "the exported graph" if isinstance(model, bytes) else str(model)
        raise ConfigError(f"{where}: onnxruntime cannot load it ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def cache_dir() -> Path:
    """Where graphs exported on the fly go: ``$CAMLOC_CACHE/onnx``, else
    ``$XDG_CACHE_HOME/camloc/onnx``, else ``~/.cache/camloc/onnx``."""
    base = os.environ.get("CAMLOC_CACHE")
    if base:
        return Path(base).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "camloc" / "onnx"


def _model_key(model: CamModel, hw: tuple[int, int]) -> str:
    import camloc

    h = hashlib.sha256()
    head = model.head
    for part in (camloc.__version__, torch.__version__, model.spec.name, model.spec.num_classes,
                 hw, head.feature_name if head is not None else "", model.spec.class_names):
        h.update(repr(part).encode())
    for name, t in model.module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def cached_export(model: CamModel, folder: str | os.PathLike[str] | None = None,
                  input_size: tuple[int, int] | None = None) -> Path:
    """The CAM graph of ``model`` in the cache (exported there on first use; dynamic batch,
    ``scoremaps`` left out: the engine returns raw maps as the torch path does)."""
    from camloc.export.onnx import spec_path_of, to_onnx

    hw = tuple(input_size or model.spec.preprocess.input_size)
    root = Path(folder) if folder is not None else cache_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.spec.name)[:40]
    path = root / f"{safe}-{hw[0]}x{hw[1]}-{_model_key(model, hw)}.onnx"  # type: ignore[misc]
    if not (path.is_file() and spec_path_of(path).is_file()):
        try:
            to_onnx(model, path, top_k=min(5, model.spec.num_classes), input_size=hw,
                    dynamic_batch=True, scoremaps=False, class_input=True)
        except OSError as exc:
            raise ConfigError(f"--runtime onnx: cannot write the exported graph to {root} "
                              f"({exc.strerror or exc}); set CAMLOC_CACHE to a writable folder "
                              f"or export it with `camloc export`") from exc
    return path


class OnnxCAM(CAM):
    """Exact CAM from an exported graph run by onnxruntime; call and output as :class:`CAM`.

    Args:
        model: the :class:`~camloc.models.loader.CamModel` the graph was exported from (its
            spec and class names are used; the graph is checked against it once).
        path: an ``.onnx`` file written by ``camloc export`` / :func:`camloc.export.to_onnx`;
            default: export ``model`` into the cache (:func:`cached_export`).
        cache: the cache folder (default :func:`cache_dir`).
        input_size: ``(H, W)`` of the graph exported into the cache (default: the model's).

    Raises:
        UnsupportedHeadError: the model has no verified GAP -> linear head.
        ConfigError: onnxruntime is not installed, or the file is not an export of ``model``.
    """

    def __init__(self, model: CamModel, path: str | os.PathLike[str] | None = None, *,
                 cache: str | os.PathLike[str] | None = None,
                 input_size: tuple[int, int] | None = None) -> None:
        super().__init__(model)
        from camloc.export.onnx import read_onnx_spec, require_onnx

        require_onnx("--runtime onnx")
        p = Path(path) if path is not None else cached_export(model, cache, input_size)
        if not p.is_file():
            raise ConfigError(f"--runtime {p}: no such file")
        spec = read_onnx_spec(p)
        nc = model.spec.num_classes
        if spec.get("num_classes") != nc or "maps" not in spec.get("outputs", {}):
            raise ConfigError(f"{p}: a graph of {spec.get('num_classes')} classes "
                              f"({', '.join(spec.get('outputs', {}))}); {model.spec.name} has {nc} "
                              f"classes: export its CAM graph with `camloc export`")
        self.path = p
        self.spec = spec
        self.input_hw = tuple(int(v) for v in spec["preprocess"]["input_size"])
        if path is not None and input_size is not None and tuple(input_size) != self.input_hw:
            raise ConfigError(f"{p}: exported for {self.input_hw[0]}x{self.input_hw[1]} inputs, "
                              f"not {input_size[0]}x{input_size[1]}; export it at that size "
                              f"(camloc export --size HxW)")
        self.session = make_session(p, cuda=model.device.type == "cuda")
        shape = self.session.get_inputs()[0].shape
        self.batch_one = shape[0] == 1
        self.class_input = "classes" in spec.get("inputs", {})
        self.top_k = int(spec.get("top_k", 0))
        self._check(model)

    def __repr__(self) -> str:
        return f"OnnxCAM(path={str(self.path)!r}, layers={self.layers})"

    def _check(self, model: CamModel) -> None:
        from camloc.devices import eval_mode

        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, *self.input_hw, generator=g)
        (got,) = self.session.run(["logits"], {"images": x.numpy()})
        with eval_mode(model.module), torch.no_grad():
            want = model.logits(x.to(model.device)).float().cpu()
        err = float((want - torch.from_numpy(got)).abs().max() / want.abs().max().clamp_min(1.0))
        if not err <= 1e-3:
            raise ConfigError(f"{self.path}: its logits differ from {model.spec.name}'s (relative "
                              f"error {err:.2g}); it was exported from another model or weights")

    def _classes_feed(self, n: int, classes: ClassSelection | Target) -> np.ndarray:
        c = int(self.model.spec.num_classes)
        if isinstance(classes, str) and classes == "all":
            return np.arange(c, dtype=np.int64)[None]
        if isinstance(classes, str) and classes.startswith("top") and classes[3:].isdigit():
            classes = int(classes[3:])
        if isinstance(classes, int) and not isinstance(classes, bool):
            if classes < 1:
                raise ConfigError(f"top_k={classes}: must be at least 1")
            return np.full((1, min(classes, c)), -1, dtype=np.int64)
        if isinstance(classes, ClassTarget):
            classes.check(n, c)
            return classes.class_ids.cpu().numpy().astype(np.int64)
        if isinstance(classes, Target) or callable(classes):
            raise ConfigError(f"classes={classes!r}: exact CAM reads the classifier's rows, so "
                              f"it explains class logits only (class ids or a ClassTarget)")
        ids = select_classes(torch.zeros(n, c), classes)  # validates ids and shape
        return ids.cpu().numpy().astype(np.int64)

    def __call__(self, x: torch.Tensor, classes: ClassSelection | Target = 5  # type: ignore[override]
                 ) -> CamOutput:
        """Run the graph on the batch ``x`` (``(N, 3, H, W)`` at the exported size) and return
        the maps of ``classes`` (see :func:`~camloc.cams.select_classes`)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ConfigError(f"x: expected a (N, 3, H, W) tensor, got "
                              f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[-2:]) != self.input_hw or x.shape[1] != 3:
            raise ConfigError(f"x: shape {tuple(x.shape)}, but {self.path.name} was exported for "
                              f"(N, 3, {self.input_hw[0]}, {self.input_hw[1]}); export it at this "
                              f"size (camloc export --size HxW)")
        n = int(x.shape[0])
        feed_ids = self._classes_feed(n, classes)
        keep = feed_ids.shape[1]
        if not self.class_input:
            if (feed_ids >= 0).any() or keep > self.top_k:
                raise ConfigError(f"{self.path}: exported without the 'classes' input, it gives "
                                  f"the top-{self.top_k} maps only; for maps of given classes "
                                  f"export it with `camloc export --classes-input`")
        images = x.detach().float().cpu().contiguous().numpy()
        names = ["logits", "top_classes", "maps"]

        def run(rows: slice) -> list[np.ndarray]:
            feed = {"images": images[rows]}
            if self.class_input:
                feed["classes"] = feed_ids[rows] if len(feed_ids) > 1 else feed_ids
            return self.session.run(names, feed)

        if self.batch_one and n != 1:
            parts = [run(slice(i, i + 1)) for i in range(n)]
            logits, ids, maps = (np.concatenate([p[j] for p in parts]) for j in range(3))
        else:
            logits, ids, maps = run(slice(None))
        ids, maps = ids[:, :keep], maps[:, :keep]
        dev = self.model.device
        lt = torch.from_numpy(logits).to(dev)
        it = torch.from_numpy(ids).to(dev)
        mt = torch.from_numpy(maps).to(dev)
        if not torch.isfinite(lt).all():
            raise ModelError(f"{self.path.name}: the graph returned non-finite logits")
        bias = lt.gather(1, it) - global_pool(mt)
        return CamOutput(lt, it, mt, bias, self.name, self.layers)


def make_runtime_engine(model: CamModel, runtime: str | None, method: str = "cam",
                        input_size: tuple[int, int] | None = None) -> OnnxCAM | None:
    """``--runtime``: ``None``/``"torch"`` -> None (the torch method); ``"onnx"`` -> an
    :class:`OnnxCAM` on the cached export; a path to a ``.onnx`` file -> one on that file."""
    if runtime is None or str(runtime).strip().lower() == "torch":
        return None
    if str(method).strip().lower() != "cam":
        raise ConfigError(f"--runtime {runtime}: the ONNX runtime runs exact CAM only (--method cam"
                          f"), not {method!r}; gradient methods need a backward pass")
    text = str(runtime).strip()
    if text.lower() == "onnx":
        return OnnxCAM(model, input_size=input_size)
    if text.lower().endswith(".onnx"):
        return OnnxCAM(model, text, input_size=input_size)
    raise ConfigError(f"--runtime {runtime!r}: expected torch, onnx, or an exported .onnx file")


