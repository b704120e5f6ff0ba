"""Targets: what a map explains, as scores read from the model's output.

A target turns a batch's logits ``(B, C)`` into ``k`` scores per image ``(B, k)``; a map method
explains each of them (gradient methods differentiate them, perturbation methods re-score them
on perturbed inputs) and the faithfulness metrics watch them fall as pixels are removed. One type
for the engine (``CAMMethod.__call__(x, classes=...)``), evaluate's ground-truth maps
(:func:`camloc.evaluation.evaluate.gt_class_maps`) and the faithfulness accumulators
(``update(..., class_ids=...)``), so a new kind of target needs no change in any of them.

What is accepted wherever a target is (:data:`TargetSpec`):

* class selections (:data:`ClassSelection`): ``int k`` or ``"topK"`` (the top-k classes of each
  image), ``"all"``, a list of class ids (the same for every image), an ``(N, k)`` tensor or
  nested list (per-image ids, e.g. ground truth);
* a :class:`Target`: :class:`ClassTarget` (per-image class ids), :class:`Margin` (a class's
  logit minus the best other class's, or minus a given class's), :class:`ScoreTarget`;
* any callable ``f(logits) -> scores`` with ``scores`` of shape ``(B,)`` or ``(B, k)``, computed
  row by row from the logits it is given (the rows may be perturbed copies of the images).

A :class:`Target` sees which image each row of logits belongs to (``rows``), so per-image targets
work on the batches of perturbed inputs the methods and metrics build; a plain callable does not
need to. The score is differentiable where the logits are (gradient methods need that).

>>> import torch
>>> from camloc.targets import ClassTarget, Margin, resolve_targets
>>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
>>> resolve_targets("top1", logits).class_ids.tolist()
[[0], [1]]
>>> Margin([0, 2]).scores(logits).tolist()
[[1.0], [-2.0]]
>>> resolve_targets(lambda z: z[:, 2] - z[:, 1], logits).scores(logits).tolist()
[[0.5], [-2.0]]

Methods that read a classifier's rows (exact CAM) need class ids: they accept class selections
and :class:`ClassTarget` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from camloc.errors import ConfigError

__all__ = ["ClassSelection", "ClassTarget", "Margin", "ScoreFn", "ScoreTarget", "Target",
           "TargetSpec", "resolve_targets", "select_classes"]

#: a class selection: ``int k``/``"topK"``, ``"all"``, ids for every image, or per-image ids
ClassSelection = int | str | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor
#: a score function: logits ``(B, C)`` -> scores ``(B,)`` or ``(B, k)``
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


class Target:
    """Base of the targets: ``k`` scores per image read from logits.

    Subclasses implement :meth:`scores`; ``class_ids`` is an ``(N, k)`` tensor where the scores
    are plain logits of those classes (:class:`ClassTarget`), the classes a :class:`Margin` is
    about, and ``None`` where no class stands for a score.
    """

    #: scores per image
    k: int = 1
    #: ``(N, k)`` class ids the scores belong to, or None
    class_ids: torch.Tensor | None = None

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, k)`` scores of the rows of ``logits`` ``(B, C)``; ``rows`` ``(B,)`` is the index of
        the image each row belongs to (``None``: row ``i`` is image ``i``)."""
        raise NotImplementedError

    def check(self, n: int, num_classes: int) -> None:
        """Raise :class:`ConfigError` unless the target fits a batch of ``n`` images of a model
        with ``num_classes`` classes (per-image data of another length, class ids out of range)."""


def _per_image(values: torch.Tensor, rows: torch.Tensor | None, device: torch.device
               ) -> torch.Tensor:
    v = values.to(device)
    return v if rows is None else v[rows.to(device)]


def _as_ids(ids: object, what: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{what}: expected class ids, got {ids!r} ({exc})") from exc
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(f"{what}: class ids must be integers, got dtype {t.dtype}")
    return t.long()


def _check_range(ids: torch.Tensor, num_classes: int, what: str) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise ConfigError(f"{what}: ids must be in [0, {num_classes}), got "
                          f"{int(ids.min())}..{int(ids.max())}")


class ClassTarget(Target):
    """The logits of per-image classes: ``ids`` ``(N,)`` (one class per image, e.g. labels) or
    ``(N, k)``.

    >>> ClassTarget([2, 0]).scores(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).tolist()
    [[3.0], [4.0]]
    """

    def __init__(self, ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]]) -> None:
        t = _as_ids(ids, "classes")
        if t.dim() == 1:
            t = t[:, None]
        if t.dim() != 2:
            raise ConfigError(f"classes: expected ids of shape (N,) or (N, k), got {tuple(t.shape)}")
        self.class_ids = t
        self.k = int(t.shape[1])

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return logits.gather(1, _per_image(self.class_ids, rows, logits.device))

    def check(self, n: int, num_classes: int) -> None:
        if self.class_ids.shape[0] != n:
            raise ConfigError(f"classes: expected ids for {n} images, got "
                              f"{self.class_ids.shape[0]}")
        _check_range(self.class_ids, num_classes, "classes")

    def __repr__(self) -> str:
        return f"ClassTarget(shape={tuple(self.class_ids.shape)})"


class Margin(Target):
    """``logit[c] - logit[d]``: how far class ``c`` leads class ``d``, or (``against=None``) the
    best other class of the same row (positive exactly where ``c`` is the prediction).

    ``cls`` and ``against`` are one class for every image or one per image ``(N,)``. The map of a
    margin shows what separates ``c`` from its rival rather than what supports ``c`` alone.

    >>> Margin(1, against=0).scores(torch.tensor([[1.0, 4.0, 0.0]])).tolist()
    [[3.0]]
    """

    def __init__(self, cls: int | Sequence[int] | torch.Tensor,
                 against: int | Sequence[int] | torch.Tensor | None = None) -> None:
        self.cls = _as_ids(cls, "Margin(cls)").reshape(-1)
        self.against = None if against is None else _as_ids(against, "Margin(against)").reshape(-1)
        if self.against is not None and 1 < len(self.cls) != len(self.against) > 1:
            raise ConfigError(f"Margin: cls has {len(self.cls)} ids and against {len(self.against)};"
                              f" give one id or one per image for each")
        self.k = 1
        self.class_ids = self.cls[:, None]

    def _ids(self, ids: torch.Tensor, b: int, rows: torch.Tensor | None,
             device: torch.device) -> torch.Tensor:
        if len(ids) == 1:
            return ids.to(device).expand(b)
        return _per_image(ids, rows, device)

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        b = logits.shape[0]
        c = self._ids(self.cls, b, rows, logits.device)[:, None]
        own = logits.gather(1, c)
        if self.against is not None:
            other = logits.gather(1, self._ids(self.against, b, rows, logits.device)[:, None])
        else:  # the best other class: mask c out with -inf
            masked = logits.scatter(1, c, float("-inf"))
            other = masked.amax(dim=1, keepdim=True)
        return own - other

    def check(self, n: int, num_classes: int) -> None:
        for name, ids in (("cls", self.cls), ("against", self.against)):
            if ids is None:
                continue
            if len(ids) not in (1, n):
                raise ConfigError(f"Margin({name}): expected one class or {n} (one per image), "
                                  f"got {len(ids)}")
            _check_range(ids, num_classes, f"Margin({name})")
        if self.against is None and num_classes < 2:
            raise ConfigError("Margin: a model with one class has no other class to lead")

    def __repr__(self) -> str:
        against = None if self.against is None else self.against.tolist()
        return f"Margin(cls={self.cls.tolist()}, against={against})"


class ScoreTarget(Target):
    """A score function ``f(logits (B, C)) -> (B,)`` or ``(B, k)``, the same for every image.

    ``k`` is learnt on the first call (:func:`resolve_targets` makes it on the clean logits);
    later calls must return as many scores per row.
    """

    def __init__(self, fn: ScoreFn) -> None:
        if not callable(fn):
            raise ConfigError(f"target: expected a callable on the logits, got {fn!r}")
        self.fn = fn
        self._k: int | None = None

    @property
    def k(self) -> int:  # type: ignore[override]
        if self._k is None:
            raise ConfigError("target: call scores() once before reading k")
        return self._k

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        out = self.fn(logits)
        b = logits.shape[0]
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() \
                or out.dim() not in (1, 2) or out.shape[0] != b:
            got = (f"shape {tuple(out.shape)} dtype {out.dtype}" if isinstance(out, torch.Tensor)
                   else type(out).__name__)
            raise ConfigError(f"target {getattr(self.fn, '__name__', self.fn)!r}: expected float "
                              f"scores of shape ({b},) or ({b}, k) from logits of shape "
                              f"{tuple(logits.shape)}, got {got}")
        out = out[:, None] if out.dim() == 1 else out
        if self._k is None:
            self._k = int(out.shape[1])
        elif out.shape[1] != self._k:
            raise ConfigError(f"target: returned {out.shape[1]} scores per row, earlier {self._k}")
        return out

    def __repr__(self) -> str:
        return f"ScoreTarget({getattr(self.fn, '__name__', self.fn)!r})"


#: anything accepted where a target is: a class selection, a :class:`Target`, or a score function
TargetSpec = ClassSelection | Target | ScoreFn


def select_classes(logits: torch.Tensor, classes: ClassSelection) -> torch.Tensor:
    """Resolve a class selection to an ``(N, k)`` index tensor.

    ``int k`` or ``"top5"``: the top-k classes of each image (all of them if there are fewer);
    ``"all"``: every class; a list of ids: the same classes for every image; an ``(N, k)`` tensor or
    nested list: per-image ids (e.g. ground truth).
    """
    n, c = logits.shape
    if isinstance(classes, str):
        if classes == "all":
            return torch.arange(c, device=logits.device).expand(n, c)
        if classes.startswith("top") and classes[3:].isdigit():
            classes = int(classes[3:])
        else:
            raise ConfigError(f"classes={classes!r}: expected 'all', 'topK', an int, or class ids")
    if isinstance(classes, bool):
        raise ConfigError("classes must not be a bool")
    if isinstance(classes, int):
        if classes < 1:
            raise ConfigError(f"top_k={classes}: must be at least 1")
        return logits.topk(min(classes, c), dim=1).indices  # top-5 of a 3-class model: all 3
    try:
        ids = torch.as_tensor(classes, device=logits.device, dtype=torch.long)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"classes: expected class ids, got {classes!r} ({exc})") from exc
    if ids.dim() == 1:
        ids = ids.expand(n, -1)
    if ids.dim() != 2 or ids.shape[0] != n:
        raise ConfigError(f"classes: expected ids of shape (k,) or ({n}, k), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c):
        raise ConfigError(f"classes: ids must be in [0, {c}), got {ids.min().item()}..{ids.max().item()}")
    return ids


def resolve_targets(targets: TargetSpec, logits: torch.Tensor) -> Target:
    """The :class:`Target` that ``targets`` names for a batch with these (clean) logits ``(N, C)``.

    Class selections become a :class:`ClassTarget` (``"top5"`` reads the logits); a callable
    becomes a :class:`ScoreTarget`, called once here to check its output; a :class:`Target` is
    checked against the batch and returned as is.

    Raises:
        ConfigError: a selection, ids or a target that does not fit the batch or the model.
    """
    n, c = logits.shape
    if isinstance(targets, Target):
        target = targets
    elif callable(targets) and not isinstance(targets, torch.Tensor):
        target = ScoreTarget(targets)
    else:
        return ClassTarget(select_classes(logits, targets))  # type: ignore[arg-type]
    target.check(n, c)
    target.scores(logits.detach())  # a score function learns its k; bad output fails here
    return target
