"""The fitted localizer: a class-agnostic foreground map and how it combines with the class map.

A :class:`Localizer` holds a logistic regression on the frozen network's per-pixel features
(``kind="head"``: the chosen layers' maps resized to the finest layer's grid, concatenated,
standardised, then ``sigmoid(w . f + b)``) or no weights at all (``kind="pc1"``: each image's first
principal component of the last layer's features, its sign chosen to agree with the class map).
:class:`LocalizedMethod` wraps any map method: one forward pass gives the class map and the
features, and its maps are ``minmax(class map) * foreground ** alpha`` (``combine="product"``),
or ``(1 - alpha) * minmax(class map) + alpha * foreground`` (``combine="mix"``).

A localizer folder holds ``localizer.json`` (settings, the model it was fitted on, the images it
was fitted on, the recommended TTA and box threshold) and ``head.npz`` (the weights).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from camloc.errors import ConfigError

__all__ = ["COMBINES", "KINDS", "Localizer", "LocalizedMethod", "load_localizer", "model_fingerprint",
           "run_capturing", "save_localizer", "with_localizer", "MANIFEST", "WEIGHTS"]

MANIFEST = "localizer.json"
WEIGHTS = "head.npz"
FORMAT = 1
KINDS = ("head", "pc1")
COMBINES = ("product", "mix", "foreground")


def model_fingerprint(model: Any) -> str:
    """A short sha256 of the model's parameters and buffers (in ``state_dict`` order): the
    localizer is only valid on the exact weights it was fitted on."""
    h = hashlib.sha256()
    for name, t in model.module.state_dict().items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Localizer:
    """A class-agnostic foreground model and its recommended settings (see the module docstring).

    ``layers``: the layers whose features it reads; ``mean``/``std``/``weight``/``bias``: the
    standardisation and the logistic regression (``kind="head"``); ``combine``/``alpha``: how the
    foreground map meets the class map; ``threshold``: the box threshold recommended on the data it
    was chosen on; ``tta``: the recommended ``--tta`` text (``"none"``); ``model``: the model's
    name and weights fingerprint; ``fit``: where it came from (dataset, images, figures).
    """

    kind: str
    layers: list[str]
    model: dict[str, str]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    weight: np.ndarray | None = None
    bias: float = 0.0
    combine: str = "product"
    alpha: float = 1.0
    threshold: float | None = None
    tta: str = "none"
    fit: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"localizer kind {self.kind!r}: expected one of {KINDS}")
        if self.combine not in COMBINES:
            raise ConfigError(f"localizer combine {self.combine!r}: expected one of {COMBINES}")
        if not (0.0 <= float(self.alpha) <= 8.0):
            raise ConfigError(f"localizer alpha {self.alpha!r}: expected a number in [0, 8]")
        if self.kind == "head" and (self.weight is None or self.mean is None or self.std is None):
            raise ConfigError("localizer kind 'head' needs its weights (mean, std, weight)")

    def with_(self, **kw: Any) -> Localizer:
        """A copy with some settings replaced (``combine``, ``alpha``, ``threshold``, ``tta``)."""
        return replace(self, **kw)

    @property
    def key(self) -> str:
        """A short id of the maps this localizer makes (weights, layers, combination)."""
        h = hashlib.sha256(f"{self.kind}|{self.layers}|{self.combine}|{float(self.alpha)}|"
                           f"{self.model.get('fingerprint')}".encode())
        for a in (self.mean, self.std, self.weight):
            if a is not None:
                h.update(np.asarray(a, np.float32).tobytes())
        h.update(np.float32(self.bias).tobytes())
        return h.hexdigest()[:12]

    def settings(self) -> dict[str, Any]:
        """The settings the reports record."""
        return {"key": self.key, "kind": self.kind, "layers": list(self.layers), "combine": self.combine,
                "alpha": float(self.alpha), "threshold": self.threshold, "tta": self.tta,
                "model": dict(self.model), "path": self.path,
                "fitted_images": len(self.fit.get("fit_ids", []))}

    def check_model(self, model: Any) -> None:
        """Refuse a model other than the one the localizer was fitted on (name and weights)."""
        where = f"localizer {self.path}" if self.path else "localizer"
        name = model.spec.name
        if self.model.get("name") != name:
            raise ConfigError(f"{where}: fitted on model {self.model.get('name')!r}, not {name!r}; "
                              f"use --model {self.model.get('name')} or fit one for {name}")
        fp = model_fingerprint(model)
        if self.model.get("fingerprint") not in (None, fp):
            raise ConfigError(f"{where}: fitted on other weights of {name} (fingerprint "
                              f"{self.model.get('fingerprint')}, these are {fp}); fit it again "
                              f"on these weights")

    # -- maps ------------------------------------------------------------------------------------

    def foreground(self, feats: list[torch.Tensor], cam: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(N, k, g, g)`` foreground map in ``[0, 1]`` from the layers' ``(N, K, h, w)``
        features (``k`` = 1 for the learned head; for PC1, one per class map of ``cam``)."""
        if self.kind == "pc1":
            return _pc1(feats[-1], cam)
        x = stack_features(feats)
        dev = x.device
        mean = torch.as_tensor(self.mean, device=dev).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, device=dev).view(1, -1, 1, 1)
        w = torch.as_tensor(self.weight, device=dev)
        z = torch.einsum("nchw,c->nhw", (x - mean) / std, w) + float(self.bias)
        return torch.sigmoid(z)[:, None]

    def combine_maps(self, cam: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """The combined ``(N, k, g, g)`` map of class maps ``cam`` and foreground ``fg``."""
        from camloc.cams.postprocess import normalize, upsample

        size = max(tuple(cam.shape[-2:]), tuple(fg.shape[-2:]), key=lambda s: s[0] * s[1])
        c = normalize(upsample(cam.float(), size, "bilinear"), "minmax")
        f = upsample(fg.float(), size, "bilinear").clamp(0, 1)
        if self.combine == "foreground":
            return f.expand_as(c).contiguous()
        if self.combine == "mix":
            return (1.0 - self.alpha) * c + self.alpha * f
        return c * f.pow(float(self.alpha))


def stack_features(feats: list[torch.Tensor]) -> torch.Tensor:
    """The layers' maps resized (bilinear) to the finest grid and concatenated on channels."""
    size = max((tuple(f.shape[-2:]) for f in feats), key=lambda s: s[0] * s[1])
    return torch.cat([f.float() if tuple(f.shape[-2:]) == size else
                      F.interpolate(f.float(), size=size, mode="bilinear", align_corners=False)
                      for f in feats], dim=1)


def _pc1(f: torch.Tensor, cam: torch.Tensor | None) -> torch.Tensor:
    """Each image's projection on its features' first principal component, min-max scaled, its
    sign such that it correlates positively with each class map (``(N, k, h, w)``)."""
    from camloc.cams.postprocess import normalize, upsample

    n, k, h, w = f.shape
    x = f.float().flatten(2).transpose(1, 2)  # (N, P, K)
    x = x - x.mean(dim=1, keepdim=True)
    # the projections on the first principal component are the top eigenvector of the pixels'
    # (P, P) Gram matrix (times its singular value; the scale goes in the min-max below)
    gram = (x @ x.transpose(1, 2)).double()
    _, vecs = torch.linalg.eigh(gram)
    proj = vecs[..., -1].float().view(n, 1, h, w)
    if cam is None:
        return normalize(proj, "minmax")
    c = upsample(cam.float(), (h, w), "bilinear")
    pc = proj - proj.mean(dim=(2, 3), keepdim=True)
    cc = c - c.mean(dim=(2, 3), keepdim=True)
    sign = torch.where((pc * cc).sum(dim=(2, 3), keepdim=True) >= 0, 1.0, -1.0)  # (N, k, 1, 1)
    return normalize(proj * sign, "minmax")


class LocalizedMethod:
    """A map method whose maps are combined with a :class:`Localizer`'s foreground map.

    Called like the method (``method(x, classes=...) -> CamOutput``); one forward pass serves
    both (the localizer's layers are read by hooks during the method's own pass). ``maps`` are at
    the finer of the class map's and the foreground's grids; ``bias`` is None.
    """

    def __init__(self, method: Any, localizer: Localizer) -> None:
        self.method = method
        self.localizer = localizer
        self.fg_taps = method.model.taps(list(localizer.layers))

    def __getattr__(self, name: str) -> Any:
        if name in ("method", "localizer", "fg_taps"):
            raise AttributeError(name)
        return getattr(self.method, name)

    def __repr__(self) -> str:
        return f"LocalizedMethod({self.method!r}, {self.localizer.kind})"

    def __call__(self, x: torch.Tensor, classes: Any = 5) -> Any:
        from camloc.cams.engine import CamOutput

        out, feats = run_capturing(self.method, self.fg_taps, x, classes)
        with torch.no_grad():
            fg = self.localizer.foreground(feats, out.maps)
            maps = self.localizer.combine_maps(out.maps, fg)
        return CamOutput(out.logits, out.class_ids, maps.detach(), None,
                         getattr(self.method, "name", ""), list(getattr(self.method, "layers", [])))


def run_capturing(method: Any, taps: list[Any], x: torch.Tensor, classes: Any
                  ) -> tuple[Any, list[torch.Tensor]]:
    """``(method(x, classes), the taps' (N, K, h, w) maps)`` from one forward pass: the taps are
    read by hooks during the method's own (first, clean) pass; a second pass only when the method
    did not run them."""
    got: list[torch.Tensor | None] = [None] * len(taps)

    def hook(i: int) -> Any:
        def f(_m: Any, _inp: Any, out: Any) -> None:
            if got[i] is None and isinstance(out, torch.Tensor):  # the clean pass comes first
                got[i] = out.detach()
        return f

    handles = [t.module.register_forward_hook(hook(i)) for i, t in enumerate(taps)]
    try:
        out = method(x, classes=classes)
    finally:
        for hd in handles:
            hd.remove()
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    if any(g is None for g in got):
        from camloc.models.layers import run_with_taps

        with torch.no_grad():
            _, raws = run_with_taps(method.model.module, x.to(out.maps.device), taps,
                                    output=method.model.output)
        got = list(raws)
    return out, [t.to_map(g, hw).float() for t, g in zip(taps, got)]  # type: ignore[arg-type]


def with_localizer(method: Any, localizer: Localizer | None) -> Any:
    """``method`` wrapped in a :class:`LocalizedMethod` (``None``: unchanged)."""
    return method if localizer is None else LocalizedMethod(method, localizer)


def save_localizer(loc: Localizer, folder: str | os.PathLike[str]) -> Path:
    """Write ``localizer.json`` and ``head.npz`` into ``folder`` (atomically); returns the folder."""
    import io as _io

    from camloc.io import atomic_write_bytes, atomic_write_json, versions

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if loc.kind == "head":
        buf = _io.BytesIO()
        np.savez(buf, mean=np.asarray(loc.mean, np.float32), std=np.asarray(loc.std, np.float32),
                 weight=np.asarray(loc.weight, np.float32), bias=np.float32(loc.bias))
        atomic_write_bytes(out / WEIGHTS, buf.getvalue())
    manifest = {"format": FORMAT, "kind": loc.kind, "layers": list(loc.layers),
                "model": dict(loc.model), "recommended": {"combine": loc.combine,
                                                          "alpha": float(loc.alpha),
                                                          "threshold": loc.threshold,
                                                          "tta": loc.tta},
                "weights": WEIGHTS if loc.kind == "head" else None, "fit": loc.fit,
                "versions": versions()}
    atomic_write_json(out / MANIFEST, manifest)
    return out


def load_localizer(folder: str | os.PathLike[str]) -> Localizer:
    """Read a localizer folder written by :func:`save_localizer` (``camloc localizer fit``).

    Raises:
        ConfigError: not a localizer folder, or a damaged/unknown manifest or weights file.
    """
    root = Path(folder)
    man = root / MANIFEST
    if not man.is_file():
        raise ConfigError(f"--localizer {folder}: no {MANIFEST} there (make one with "
                          f"`camloc localizer fit DATASET --out {folder}`)")
    try:
        d = json.loads(man.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, this camloc reads {FORMAT}")
        rec = d["recommended"]
        kw: dict[str, Any] = {}
        if d["kind"] == "head":
            with np.load(root / (d.get("weights") or WEIGHTS)) as z:
                kw = {"mean": z["mean"].astype(np.float32), "std": z["std"].astype(np.float32),
                      "weight": z["weight"].astype(np.float32), "bias": float(z["bias"])}
            if not (kw["mean"].shape == kw["std"].shape == kw["weight"].shape):
                raise ValueError("weights of different lengths")
        return Localizer(kind=d["kind"], layers=list(d["layers"]), model=dict(d["model"]),
                         combine=rec["combine"], alpha=float(rec["alpha"]),
                         threshold=None if rec.get("threshold") is None else float(rec["threshold"]),
                         tta=str(rec.get("tta") or "none"), fit=dict(d.get("fit") or {}),
                         path=str(root), **kw)
    except ConfigError as exc:
        raise ConfigError(f"--localizer {folder}: {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--localizer {folder}: not a readable camloc localizer ({exc})") from exc
