"""Exact CAM as one ONNX graph: logits, the top-k classes, their maps and boxes in one forward pass.

On a verified GAP -> linear head (:mod:`camloc.models.heads`) the map of class ``c`` is a weighted
sum of the last features with the classifier's row ``c`` (:mod:`camloc.cams.exact`), so the maps
of any classes are a gather of classifier rows and one batched matrix product with the features:
no backward pass, nothing a plain inference runtime cannot run. :func:`to_onnx` writes that graph
and, beside it, a JSON file with what a caller needs to feed it (size, mean/std, interpolation,
fit, class names) and what each output means.

Graph (``N`` images, ``k`` classes per image, ``h x w`` the feature grid, ``H x W`` the input):

==============  ================  ===========================================================
``images``      (N, 3, H, W) f32  input: RGB, resized and normalised as the JSON says
``classes``     (1|N, k) int64    only with ``class_input=True``: an optional input (default
                                  ``-1`` x ``top_k``) of class ids per slot; ``-1`` in slot
                                  ``j`` takes the image's ``j``-th best class
``logits``      (N, C) f32        the classifier's logits
``top_classes`` (N, k) int64      the class of each map (the top-k unless ``classes`` is fed)
``top_probs``   (N, k) f32        their softmax probabilities
``maps``        (N, k, h, w) f32  exact CAM at the feature grid, raw: ``mean(maps) + bias =
                                  logit``
``scoremaps``   (N, k, H, W) f32  ``maps`` resized to the input (bicubic, half-pixel centres)
                                  and normalised (``"max"``: divided by the maximum, negative
                                  evidence kept below 0; ``"minmax"``: to [0, 1])
``boxes``       (N, k, 4) f32     ``x0, y0, x1, y1`` in input pixels, continuous edges (a box
                                  spanning pixel columns 3..7 has ``x0 = 3, x1 = 8``): the
                                  tight box of every pixel above ``threshold x`` the scoremap's
                                  maximum; zeros where none is
==============  ================  ===========================================================

``scoremaps`` and ``boxes`` are left out with ``scoremaps=False``. The in-graph box takes every
pixel above the threshold; camloc's explain boxes the largest 8-connected component only, which
is the same box whenever the pixels above the threshold form one component (connected components
do not fit a plain graph; do it on ``scoremaps`` with OpenCV when you need it).

Needs the optional packages ``onnx`` and ``onnxruntime`` (``pip install camloc[onnx]``).

>>> import camloc, tempfile, pathlib                                     # doctest: +SKIP
>>> from camloc.export import to_onnx                                     # doctest: +SKIP
>>> out = to_onnx(camloc.load_model(), pathlib.Path(tempfile.mkdtemp()) / "cam.onnx")  # doctest: +SKIP
>>> out.path.name, out.spec_path.name                                     # doctest: +SKIP
('cam.onnx', 'cam.json')
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camloc.errors import ConfigError, ModelError

__all__ = ["DEFAULT_OPSET", "OnnxExport", "OUTPUTS", "SPEC_FORMAT", "onnx_install_hint",
           "read_onnx_spec", "require_onnx", "spec_path_of", "to_onnx"]

DEFAULT_OPSET = 17
SPEC_FORMAT = "camloc-onnx"
#: what each output of the CAM graph holds (written into the JSON spec)
OUTPUTS = {
    "logits": "(N, C) float32: the classifier's logits",
    "top_classes": "(N, k) int64: the class id of each map (the top-k by logit, unless the "
                   "optional 'classes' input is fed)",
    "top_probs": "(N, k) float32: softmax probability of each of those classes",
    "maps": "(N, k, h, w) float32: exact CAM at the feature grid, raw (mean(map) + bias = logit)",
    "scoremaps": "(N, k, H, W) float32: maps resized to the input size (bicubic, half-pixel "
                 "centres) and normalised (see 'normalization')",
    "boxes": "(N, k, 4) float32: x0, y0, x1, y1 in input pixels, continuous edges: the tight box "
             "of the scoremap's pixels above threshold x its maximum (zeros if none)",
}


def onnx_install_hint() -> str:
    return "pip install 'camloc[onnx]' (or: pip install onnx onnxruntime)"


def require_onnx(what: str = "the ONNX runtime", modules: tuple[str, ...] = ("onnx",
                                                                                "onnxruntime")) -> None:
    """Raise :class:`ConfigError` with the install command unless ``modules`` import."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what} needs the optional package(s) {', '.join(missing)}: "
                          f"{onnx_install_hint()}")


@dataclass
class OnnxExport:
    """What :func:`to_onnx` wrote: the graph, its JSON spec (also as a dict) and its outputs."""

    path: Path
    spec_path: Path
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        return list(self.spec.get("outputs", {}))


def spec_path_of(path: str | os.PathLike[str]) -> Path:
    """The JSON spec beside an exported graph: ``model.onnx`` -> ``model.json``."""
    p = Path(path)
    return p.with_suffix(".json") if p.suffix.lower() == ".onnx" else p.with_name(p.name + ".json")


def read_onnx_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON spec written beside the exported graph ``path`` (ConfigError naming the file)."""
    import json

    sp = spec_path_of(path)
    try:
        spec = json.loads(sp.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{sp}: missing; an ONNX file made by `camloc export` has its spec "
                          f"beside it (export it again)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{sp}: cannot read the ONNX spec ({exc})") from exc
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ConfigError(f"{sp}: not a camloc ONNX spec (format is not {SPEC_FORMAT!r})")
    return spec


def _interp(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` bicubic interpolation matrix, the numbers of :func:`camloc.cams.upsample`."""
    from camloc.cams.postprocess import upsample

    eye = torch.eye(n_in, dtype=torch.float64)[None, None]  # (1, 1, n_in, n_in)
    return upsample(eye, (n_out, n_in), "bicubic")[0, 0].float()  # A @ I @ I = A


class _CamGraph(nn.Module):
    """The traced module: the user's network with a tap on the head's layer, then exact CAM."""

    def __init__(self, model: Any, input_hw: tuple[int, int], grid: tuple[int, int],
                 maps: bool, scoremaps: bool, normalization: str, threshold: float,
                 top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.net = model.module
        self.model = model
        self.head = model.head
        self.input_hw = input_hw
        self.with_maps = maps
        self.with_scoremaps = scoremaps
        self.normalization = normalization
        self.threshold = float(threshold)
        self.grid = grid
        if scoremaps:
            self.register_buffer("ay", _interp(grid[0], input_hw[0]), persistent=False)
            self.register_buffer("axt", _interp(grid[1], input_hw[1]).t().contiguous(),
                                 persistent=False)

    def forward(self, images: torch.Tensor, classes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, ...]:
        from camloc.models.layers import run_with_taps

        if not self.with_maps:
            from camloc.models.outputs import select_output

            return (select_output(self.net(images), self.model.output),)
        head = self.head
        if head is None:  # pragma: no cover - refused in to_onnx
            raise ModelError("internal: the CAM graph needs the head")
        logits, (raw,) = run_with_taps(self.net, images, [head.tap], output=self.model.output)
        f = head.features_from_output(raw, self.input_hw).float()
        fprime, _bias = head.folded(f)
        if classes is None:
            k = self.top_k
            ids = logits.topk(k, dim=1).indices
        else:
            k = classes.shape[1]  # traced as the input's shape: any k at run time
            top = logits.topk(k, dim=1).indices
            ids = torch.where(classes >= 0, classes, top)  # (1|N, k) broadcast against (N, k)
        weight = head.classifier.weight.to(fprime.dtype)
        n, c = fprime.shape[0], fprime.shape[1]
        gh, gw = self.grid
        rows = weight[ids]  # (N, k, K): a gather of classifier rows
        maps = torch.bmm(rows, fprime.reshape(n, c, gh * gw)).reshape(n, k, gh, gw)
        probs = logits.float().softmax(dim=1).gather(1, ids)
        outs: tuple[torch.Tensor, ...] = (logits, ids, probs, maps)
        if not self.with_scoremaps:
            return outs
        # full-resolution work kept to: the resize, one reduction for the scale, the scaling,
        # and the row and column maxima the boxes are read from
        s = torch.matmul(torch.matmul(self.ay, maps), self.axt)  # (N, k, H, W)
        mx = s.amax(dim=(2, 3), keepdim=True)
        if self.normalization == "minmax":
            mn = s.amin(dim=(2, 3), keepdim=True)
            rng = mx - mn
            ok = rng > 0
            scale = torch.where(ok, 1.0 / torch.where(ok, rng, torch.ones_like(rng)),
                                torch.zeros_like(rng))
            norm = (s - mn) * scale
        else:  # "max", as camloc.cams.normalize
            ok = mx > 0
            scale = torch.where(ok, 1.0 / torch.where(ok, mx, torch.ones_like(mx)),
                                torch.zeros_like(mx))
            norm = s * scale
        return outs + (norm, self._boxes(norm))

    def _boxes(self, s: torch.Tensor) -> torch.Tensor:
        """The tight box of the pixels above ``threshold x max`` of each map (zeros if none), in
        input pixels with continuous edges (as :func:`camloc.localize.threshold_mask` selects):
        a row holds such a pixel exactly when its maximum is above the threshold."""
        hh, ww = self.input_hw
        row_max = s.amax(dim=3)  # (N, k, H)
        col_max = s.amax(dim=2)  # (N, k, W)
        mx = row_max.amax(dim=2, keepdim=True)
        t = self.threshold * mx
        rows = ((row_max > t) & (mx > 0)).float()
        cols = ((col_max > t) & (mx > 0)).float()
        y0 = rows.argmax(dim=2)
        y1 = hh - rows.flip(2).argmax(dim=2)
        x0 = cols.argmax(dim=2)
        x1 = ww - cols.flip(2).argmax(dim=2)
        box = torch.stack([x0, y0, x1, y1], dim=2).float()
        found = rows.amax(dim=2, keepdim=True) > 0
        return torch.where(found, box, torch.zeros_like(box))


def _parse_size(size: Any, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return (int(default[0]), int(default[1]))
    if isinstance(size, str):
        text = size.lower().replace(" ", "")
        parts = text.split("x")
        if len(parts) == 1:
            parts = parts * 2
        try:
            hw = tuple(int(p) for p in parts)
        except ValueError:
            hw = ()
    else:
        try:
            hw = tuple(int(v) for v in size)
        except (TypeError, ValueError):
            hw = ()
    if len(hw) != 2 or min(hw) < 8:
        raise ConfigError(f"size={size!r}: expected HxW in pixels (e.g. 224x224), each >= 8")
    return hw  # type: ignore[return-value]


def to_onnx(model: Any, out: str | os.PathLike[str], *, top_k: int = 5,
            input_size: tuple[int, int] | str | None = None, opset: int = DEFAULT_OPSET,
            dynamic_batch: bool = True, scoremaps: bool = True, normalization: str = "max",
            threshold: float = 0.2, maps: bool = True, class_input: bool = False,
            check: bool = True) -> OnnxExport:
    """Export ``model``'s exact CAM (logits, top-k classes, maps, scoremaps, boxes) as one graph.

    Args:
        model: a :class:`~camloc.models.loader.CamModel` with a verified GAP -> linear head.
        out: the ``.onnx`` file to write; the JSON spec goes beside it (``model.onnx`` ->
            ``model.json``). Both are written atomically.
        top_k: maps per image when the optional ``classes`` input is not fed (1..classes).
        input_size: ``(H, W)`` or ``"HxW"``; default: the model's input size.
        opset: the ONNX opset (>= 13).
        dynamic_batch: a free batch axis; else the graph takes exactly one image.
        scoremaps: add the ``scoremaps`` and ``boxes`` outputs (input-size maps and their boxes).
        normalization: ``"max"`` or ``"minmax"``: how ``scoremaps`` are normalised.
        threshold: the box threshold, a fraction of each scoremap's maximum (0..1).
        maps: False exports the plain classifier (only ``logits``; for comparisons).
        class_input: add the optional ``classes`` input (maps of any classes; what the runtime
            engine of ``--runtime onnx`` uses). onnxruntime warns at load time that this
            input's default is not a constant (set ``log_severity_level = 3`` to silence it).
        check: run the exported graph once with onnxruntime and compare it with torch.

    Raises:
        UnsupportedHeadError: the model has no verified GAP -> linear head (as ``method="cam"``).
        ConfigError: a bad option, or onnx/onnxruntime are not installed.
    """
    from camloc.cams.exact import CAM
    from camloc.io import atomic_write_bytes, atomic_write_json
    from camloc.devices import eval_mode
    from camloc.models.loader import CamModel

    if not isinstance(model, CamModel):
        raise ConfigError("model: expected a camloc CamModel (camloc.load_model or camloc.wrap)")
    require_onnx("camloc export", ("onnx",))
    if maps:
        CAM(model)  # the same refusal, naming what works, as method="cam"
    nc = int(model.spec.num_classes)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= nc:
        raise ConfigError(f"top_k={top_k!r}: expected an integer from 1 to {nc} (the classes)")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 23:
        raise ConfigError(f"opset={opset!r}: expected an ONNX opset from 13 to 23")
    if normalization not in ("max", "minmax"):
        raise ConfigError(f"normalization={normalization!r}: expected max or minmax")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold={threshold!r}: expected a fraction in [0, 1]")
    hw = _parse_size(input_size, model.spec.preprocess.input_size)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out}: the graph's file name must end in .onnx")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the .onnx file to write")

    device = model.device
    x = torch.zeros(1, 3, *hw, device=device)
    classes = torch.full((1, top_k), -1, dtype=torch.long, device=device)
    with eval_mode(model.module), torch.no_grad():
        grid = (0, 0)
        if maps:
            try:
                _, f = model.head.run(model.module, x)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - the user's model at another size
                raise ModelError(f"{model.spec.name}: does not run on a {hw[0]}x{hw[1]} input "
                                 f"({type(exc).__name__}: {exc}); choose another --size") from exc
            grid = (int(f.shape[-2]), int(f.shape[-1]))
        graph = _CamGraph(model, hw, grid, maps, maps and scoremaps, normalization, threshold,
                          top_k)
        class_input = bool(class_input and maps)
        names = ["logits"] if not maps else ["logits", "top_classes", "top_probs", "maps"] + (
            ["scoremaps", "boxes"] if scoremaps else [])
        axes: dict[str, dict[int, str]] = {}
        if dynamic_batch:
            axes["images"] = {0: "batch"}
            for name in names:
                axes[name] = {0: "batch"}
        if class_input:
            axes["classes"] = {0: "class_rows", 1: "k"}
            for name in names[1:]:
                axes.setdefault(name, {})[1] = "k"
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's notices
            try:
                torch.onnx.export(graph, (x, classes) if class_input else (x,), buf,
                                  input_names=["images", "classes"] if class_input
                                  else ["images"],
                                  output_names=names, dynamic_axes=axes, opset_version=opset,
                                  do_constant_folding=True, dynamo=False)
            except Exception as exc:  # noqa: BLE001 - an operator the exporter cannot write
                raise ModelError(f"{model.spec.name}: the ONNX export failed "
                                 f"({type(exc).__name__}: {exc})") from exc
    data = _with_default_classes(buf.getvalue(), top_k) if class_input else buf.getvalue()
    spec = _spec(model, hw, grid, top_k, opset, dynamic_batch, names, normalization, threshold,
                 maps, class_input, hashlib.sha256(data).hexdigest())
    if check:
        _check_parity(model, data, hw, maps, 2 if dynamic_batch else 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    sp = spec_path_of(out)
    atomic_write_json(sp, spec)
    return OnnxExport(out, sp, spec)


def _with_default_classes(data: bytes, top_k: int) -> bytes:
    """Give the ``classes`` input a default (``-1`` x ``top_k``: the top-k) as an initializer of
    the same name, so callers may feed ``images`` alone."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    default = numpy_helper.from_array(np.full((1, top_k), -1, dtype=np.int64), name="classes")
    proto.graph.initializer.append(default)
    return proto.SerializeToString()


def _spec(model: Any, hw: tuple[int, int], grid: tuple[int, int], top_k: int, opset: int,
          dynamic_batch: bool, names: list[str], normalization: str, threshold: float,
          maps: bool, class_input: bool, sha256: str) -> dict[str, Any]:
    import camloc

    pre = model.spec.preprocess.with_(input_size=hw)
    spec: dict[str, Any] = {
        "format": SPEC_FORMAT, "format_version": 1,
        "model": model.spec.name, "source": model.spec.source,
        "num_classes": int(model.spec.num_classes), "class_names": list(model.spec.class_names),
        "preprocess": pre.to_dict(),
        "preprocess_steps": (
            "RGB; fit 'stretch': resize the whole image to input_size (height, width); fit "
            "'crop': resize the shorter side to min(input_size) / crop_pct and centre-crop; "
            "pixels / 255, minus mean, divided by std, per channel; layout (N, 3, H, W) float32"),
        "inputs": {"images": f"(N, 3, {hw[0]}, {hw[1]}) float32" if dynamic_batch
                   else f"(1, 3, {hw[0]}, {hw[1]}) float32"},
        "outputs": {n: OUTPUTS[n] for n in names},
        "dynamic_batch": bool(dynamic_batch), "opset": opset,
        "camloc_version": camloc.__version__, "torch_version": torch.__version__,
        "sha256": sha256,
    }
    if class_input:
        spec["inputs"]["classes"] = (f"optional (1 or N, k) int64, default -1 x {top_k}: class "
                                     f"ids; -1 in slot j = the image's j-th best class")
    if maps:
        spec.update({"top_k": top_k, "layer": model.head.feature_name, "feature_grid": list(grid),
                     "normalization": normalization, "threshold": float(threshold),
                     "box_convention": "x0, y0, x1, y1 in input pixels, continuous edges; "
                                       "to original pixels: x * width / W, y * height / H "
                                       "for fit 'stretch'"})
    return spec


def _check_parity(model: Any, data: bytes, hw: tuple[int, int], maps: bool, n: int) -> None:
    """Run the graph once on a random input and compare its logits (and maps) with torch's."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return  # exporting needs only onnx; the check runs where the runtime is installed
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the 'classes' default is meant to be overridable
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, *hw, generator=g)
    got = sess.run(None, {"images": x.numpy()})
    from camloc.devices import eval_mode

    with eval_mode(model.module), torch.no_grad():
        if maps:
            from camloc.cams.exact import CAM

            ids = torch.from_numpy(got[1]).to(model.device)  # the graph's classes (ties aside)
            ref = CAM(model)(x.to(model.device), classes=ids)
            pairs = [("logits", ref.logits, got[0]), ("maps", ref.maps, got[3])]
        else:
            pairs = [("logits", model.logits(x.to(model.device)), got[0])]
    for name, want, have in pairs:
        want = want.float().cpu()
        have_t = torch.from_numpy(have)
        if tuple(want.shape) != tuple(have_t.shape):
            raise ModelError(f"{model.spec.name}: the exported graph's {name} have shape "
                             f"{tuple(have_t.shape)}, torch's {tuple(want.shape)}")
        scale = float(want.abs().max().clamp_min(1.0))
        err = float((want - have_t).abs().max()) / scale
        if not err <= 1e-3:
            raise ModelError(f"{model.spec.name}: the exported graph's {name} differ from torch's "
                             f"(relative error {err:.2g}); the model uses an operation the ONNX "
                             f"export does not reproduce")
