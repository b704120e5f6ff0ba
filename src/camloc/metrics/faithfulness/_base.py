"""What every faithfulness accumulator shares: checking inputs, running the model on batches of
perturbed inputs, and per-image records that merge exactly.

Scores: ``"softmax"`` is the class probability ``softmax(logits)[c]`` (computed in float64 from the
model's logits), ``"logit"`` the raw logit ``logits[c]``. The target (``class_ids``) is one class
per image or a :class:`~camloc.targets.Target` / callable with one score per image (see
:mod:`camloc.targets`); it reads the probabilities or the logits, as ``score`` says.

Model side effects: a ``torch.nn.Module`` (or a camloc ``CamModel``, whose ``module`` is used) is
switched to eval mode for the call and every submodule's train/eval flag is restored afterwards;
everything runs under ``torch.inference_mode()``, so no gradient or parameter is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from camloc.errors import ConfigError, MetricError, ModelError
from camloc.preprocess import Preprocess
from camloc.targets import ClassTarget, ScoreTarget, Target

# the statistics of camloc's default preprocessing (ImageNet), from their one definition
IMAGENET_MEAN: tuple[float, ...] = Preprocess.mean
IMAGENET_STD: tuple[float, ...] = Preprocess.std

SCORES = ("softmax", "logit")

Forward = Callable[[torch.Tensor], torch.Tensor]


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"score={score!r}: expected one of {SCORES}")
    return score


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: expected a positive integer")
    return int(batch_size)


def check_pixel_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...],
                                                                          tuple[float, ...]]:
    """Validate the input normalisation ``x = (image - mean) / std`` (one number per channel)."""
    try:
        m = tuple(float(v) for v in mean)
        s = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise ConfigError(f"mean={mean!r}, std={std!r}: expected sequences of numbers, one per "
                          "channel") from None
    if len(m) != len(s) or not m:
        raise ConfigError(f"mean and std must have one value per channel, got {len(m)} and {len(s)}")
    if not all(np.isfinite(m)) or not all(np.isfinite(s)) or min(s) <= 0:
        raise ConfigError(f"std={std!r} must be positive and mean={mean!r} finite")
    return m, s


def resolve_forward(forward: Any) -> tuple[Forward, torch.nn.Module | None]:
    """``(callable, module whose train flags to manage or None)`` for a Module, CamModel or function."""
    module = getattr(forward, "module", None)
    if isinstance(module, torch.nn.Module) and not isinstance(forward, torch.nn.Module):
        # a camloc CamModel: its own call selects the logits (``output=``); its module's flags
        return (forward if callable(forward) else module), module
    if isinstance(forward, torch.nn.Module):
        return forward, forward
    if callable(forward):
        return forward, None
    raise ConfigError(f"forward: expected a torch.nn.Module, a camloc CamModel or a function "
                      f"x -> logits, got {type(forward).__name__}")


@contextlib.contextmanager
def model_context(module: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode (flags restored afterwards) and inference mode for the block."""
    from camloc.devices import eval_mode

    with contextlib.ExitStack() as stack:
        if module is not None:
            stack.enter_context(eval_mode(module))
        stack.enter_context(torch.inference_mode())
        yield


def check_inputs(x: Any, maps: Any, class_ids: Any, image_ids: Sequence[str] | None,
                 unit_maps: bool) -> tuple[torch.Tensor, torch.Tensor, Target, list[str | None]]:
    """Validate one ``update`` batch; returns ``(x, maps on x's device as float32, target, names)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise MetricError(f"x must be a float tensor (N, C, H, W) of normalised model inputs, got {got}")
    n, _, h, w = x.shape
    if n == 0:
        raise MetricError("x holds no images")
    m = torch.as_tensor(maps)
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3 or m.shape[0] != n:
        raise MetricError(f"maps must have shape ({n}, {h}, {w}) (one map per image), got "
                          f"{tuple(m.shape)}")
    if tuple(m.shape[1:]) != (h, w):
        raise MetricError(f"maps are {m.shape[1]}x{m.shape[2]} but the inputs are {h}x{w}; "
                          f"resize them to the input resolution first, e.g. "
                          f"camloc.cams.upsample(maps[:, None], ({h}, {w}))[:, 0]")
    if not m.is_floating_point():
        m = m.float()
    m = m.detach().to(device=x.device, dtype=torch.float32)
    if not bool(torch.isfinite(m).all()):
        raise MetricError("maps contain NaN or infinite values; normalise them first "
                          "(camloc.cams.normalize turns NaN maps into zeros)")
    if unit_maps and (float(m.min()) < 0.0 or float(m.max()) > 1.0):
        raise MetricError(f"maps must lie in [0, 1] (got {float(m.min()):.4g}..{float(m.max()):.4g}); "
                          "normalise them, e.g. camloc.cams.normalize(maps, 'minmax')")
    target = _target(class_ids, n)
    names: list[str | None]
    if image_ids is None:
        names = [None] * n
    else:
        names = [str(s) for s in image_ids]
        if len(names) != n:
            raise MetricError(f"image_ids must have {n} entries, got {len(names)}")
    return x, m, target, names


def _target(class_ids: Any, n: int) -> Target:
    """``class_ids`` as a one-score-per-image target: ``(N,)`` ids, a Target or a callable."""
    if isinstance(class_ids, Target):
        if class_ids.class_ids is not None and class_ids.class_ids.shape[1] != 1:
            raise MetricError(f"class_ids: the metrics score one target per image, got "
                              f"{class_ids.class_ids.shape[1]} classes per image")
        return class_ids
    if callable(class_ids) and not isinstance(class_ids, torch.Tensor):
        return ScoreTarget(class_ids)
    ids = torch.as_tensor(np.asarray(class_ids.cpu() if isinstance(class_ids, torch.Tensor)
                                     else class_ids))
    if ids.shape != (n,) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise MetricError(f"class_ids must be {n} integer class ids (one per image), got "
                          f"shape {tuple(ids.shape)} dtype {ids.dtype}")
    return ClassTarget(ids.long())


def class_ids_of(target: Target, n: int) -> np.ndarray | None:
    """``(N,)`` the class each image's score is about, or None (a score function's target)."""
    if target.class_ids is None:
        return None
    ids = target.class_ids[:, 0].cpu().numpy()
    return np.broadcast_to(ids, (n,)) if ids.shape[0] == 1 else ids


def stable_key(name: str) -> int:
    """A 63-bit integer from a string (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


class Scorer:
    """Runs ``forward`` on perturbed inputs in batches of at most ``batch_size`` and reads the
    target's score (and the arg-max class) of each; ``n`` images in the batch."""

    def __init__(self, fn: Forward, score: str, batch_size: int, target: Target, n: int) -> None:
        self.fn = fn
        self.score = score
        self.batch_size = batch_size
        self.target = target
        self.n = n
        self.forwards = 0  # batched forward calls made (for cost reports)
        self._checked = False

    def _check(self, ncls: int) -> None:
        if isinstance(self.target, ClassTarget):
            ids = self.target.class_ids
            if int(ids.min()) < 0 or int(ids.max()) >= ncls:
                raise MetricError(f"class_ids must lie in [0, {ncls}) for a model with {ncls} "
                                  f"classes, got {int(ids.min())}..{int(ids.max())}")
        else:
            self.target.check(self.n, ncls)
        self._checked = True

    def from_logits(self, logits: torch.Tensor, rows: torch.Tensor | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and arg-max classes of ``logits``; ``rows``: the image of each row (None: all
        ``n`` images in order)."""
        b = self.n if rows is None else int(rows.shape[0])
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != b:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelError(f"forward must return logits of shape ({b}, classes), got {got}")
        if not self._checked:
            self._check(logits.shape[1])
        lg = logits.detach().double()
        z = torch.log_softmax(lg, dim=1).exp() if self.score == "softmax" else lg
        s = self.target.scores(z, rows)
        if s.shape != (b, 1):
            raise MetricError(f"class_ids: the metrics score one target per image; "
                              f"{self.target!r} gave scores of shape {tuple(s.shape)}")
        return s.view(-1).cpu().numpy(), lg.argmax(dim=1).cpu().numpy()

    def run(self, make_batch: Callable[[int, int], torch.Tensor], rows: torch.Tensor
            ) -> tuple[np.ndarray, np.ndarray]:
        """Score ``len(rows)`` perturbed inputs of images ``rows``; ``make_batch(i, j)`` builds
        inputs ``i..j-1``."""
        n = int(rows.shape[0])
        scores = np.empty(n, np.float64)
        preds = np.empty(n, np.int64)
        for i in range(0, n, self.batch_size):
            j = min(n, i + self.batch_size)
            s, p = self.from_logits(self.fn(make_batch(i, j)), rows[i:j])
            self.forwards += 1
            scores[i:j] = s
            preds[i:j] = p
        return scores, preds


def exact_mean(values: np.ndarray) -> float:
    """Correctly rounded mean (``math.fsum``), independent of the order the records came in."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return math.fsum(v.tolist()) / v.size if v.size else float("nan")


class RecordAccumulator:
    """Per-image float64 records (a few numbers per image) + ids; merging concatenates them.

    Subclasses define ``kind``, ``fields`` (name -> trailing shape function of the settings),
    :meth:`settings` (the constructor arguments that define the metric) and :meth:`compute`.
    """

    kind: ClassVar[str] = ""

    def __init__(self, score: str, batch_size: int) -> None:
        self.score = check_score(score)
        self.batch_size = check_batch_size(batch_size)
        self._ids: list[str | None] = []
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in self.field_shapes()}

    # ---- subclass hooks
    def settings(self) -> dict[str, Any]:
        """The constructor arguments that define the metric (JSON-serialisable)."""
        return {"score": self.score}

    def field_shapes(self) -> dict[str, tuple[int, ...]]:
        """Record name -> per-image shape."""
        raise NotImplementedError

    # ---- records
    def _add(self, names: list[str | None], **arrays: np.ndarray) -> None:
        shapes = self.field_shapes()
        if set(arrays) != set(shapes):
            raise MetricError(f"internal: records {sorted(arrays)} != {sorted(shapes)}")
        for k, v in arrays.items():
            self._chunks[k].append(np.asarray(v, np.float64).reshape((len(names),) + shapes[k]))
        self._ids.extend(names)

    def column(self, name: str) -> np.ndarray:
        """All images' values of one record, in update (then merge) order."""
        shape = self.field_shapes()[name]
        parts = self._chunks[name]
        return np.concatenate(parts) if parts else np.zeros((0,) + shape, np.float64)

    @property
    def count(self) -> int:
        return len(self._ids)

    @property
    def image_ids(self) -> list[str]:
        """Each image's id as given, else its running index as a string."""
        return [str(i) if s is None else s for i, s in enumerate(self._ids)]

    def _require(self) -> None:
        if not self._ids:
            raise MetricError("no images were scored; call update() first")

    # ---- reduction
    def merge(self, other: RecordAccumulator) -> RecordAccumulator:
        """Append another accumulator's records (exact); returns ``self``."""
        if type(other) is not type(self):
            raise MetricError(f"can only merge a {type(self).__name__}, got {type(other).__name__}")
        if other.settings() != self.settings():
            raise MetricError(f"cannot merge accumulators with different settings: "
                              f"{self.settings()} vs {other.settings()}")
        for k in self._chunks:
            self._chunks[k].extend(other._chunks[k])
        self._ids.extend(other._ids)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Settings, ids and records as Python scalars / numpy arrays (picklable, for torchrun)."""
        d: dict[str, Any] = {"kind": self.kind, "settings": self.settings(),
                             "image_ids": np.asarray(["" if i is None else i for i in self._ids],
                                                     dtype=str)}
        d["records"] = {k: self.column(k) for k in self._chunks}
        return d

    @classmethod
    def from_state_dict(cls, d: dict[str, Any], batch_size: int = 64) -> Any:
        """Rebuild an accumulator saved with :meth:`state_dict` (``batch_size`` is not a setting)."""
        try:
            if d["kind"] != cls.kind:
                raise MetricError(f"state_dict is a {d['kind']!r} accumulator, not {cls.kind!r}")
            settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d["settings"].items()}
            acc = cls(batch_size=batch_size, **settings)
            ids = [str(s) or None for s in np.asarray(d["image_ids"]).tolist()]
            shapes = acc.field_shapes()
            for k, shape in shapes.items():
                arr = np.asarray(d["records"][k], np.float64)
                if arr.shape != (len(ids),) + shape:
                    raise MetricError(f"state_dict record {k!r} has shape {arr.shape}, expected "
                                      f"{(len(ids),) + shape}")
                acc._chunks[k] = [arr.copy()] if len(ids) else []
            acc._ids = ids
        except KeyError as e:
            raise MetricError(f"state_dict is missing {e.args[0]!r}") from None
        except TypeError as e:
            raise MetricError(f"state_dict settings do not fit {cls.__name__}: {e}") from None
        return acc

    @property
    def per_image(self) -> list[dict[str, Any]]:
        """One record per image, in update order: ``image_id`` and every stored value."""
        cols = {k: self.column(k) for k in self._chunks}
        out = []
        for i, name in enumerate(self.image_ids):
            rec: dict[str, Any] = {"image_id": name}
            for k, v in cols.items():
                rec[k] = v[i].tolist() if v.ndim > 1 else float(v[i])
            out.append(rec)
        return out
