"""The one batch runner: images decoded off the main thread, in input order, into batches.

Every verb that runs a model over many images (explain, evaluate, compare, units, probe, the
localizer fit) reads them here, in one of two shapes:

- :func:`decoded_batches` + :func:`prefetch` (explain, probe, ``camloc.explain``): a decode
  thread runs ahead of the network; a batch holds at most ``batch_size`` *readable* images and at
  most ``max_pixels`` decoded pixels; with ``block`` a batch never spans two blocks of input
  positions (torchrun ranks then share forward passes exactly as one process does). A failure
  is handed to ``fail(item, reason)`` and the item left out.
- :func:`loader_batches` (evaluate, compare, units, the localizer fit): each batch is
  ``batch_size`` consecutive *inputs*, decoded and preprocessed to network input in DataLoader
  worker processes when ``workers > 0``; :func:`split_failures` turns the unreadable ones into
  ``{"path", "image_id", "error"}`` records, :func:`stack_inputs` stacks the rest on the device
  in the requested memory layout (``channels_last``).

Order is pinned in both: batches come out in input order, whatever the number of workers.

>>> from PIL import Image
>>> sizes = {"a": (8, 8), "b": None, "c": (8, 8)}
>>> def load(key):
...     if sizes[key] is None:
...         raise OSError(5, "I/O error")
...     return Image.new("RGB", sizes[key])
>>> failed = []
>>> [(n, keys) for n, keys, _ in prefetch(decoded_batches(
...     sizes, 2, load, lambda key, why: failed.append((key, why))))]
[(3, ['a', 'c'])]
>>> failed
[('b', 'I/O error')]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from camloc.errors import CamlocError, ImageError

__all__ = ["PIXELS_PER_BATCH", "PREFETCH_BATCHES", "DecodeSamples", "decoded_batches",
           "failure_reason", "loader_batches", "prefetch", "split_failures", "stack_inputs"]

#: Budget for one batch's decoded photos (about 200 MB of RGB): a batch of huge photos is cut
#: short rather than holding ``batch_size`` of them at once.
PIXELS_PER_BATCH = 64_000_000
#: Decoded batches waiting for the network (decoding runs ahead in a thread).
PREFETCH_BATCHES = 2


def failure_reason(exc: BaseException) -> str:
    """The one-line reason recorded for an item that failed with ``exc``."""
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, CamlocError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _pil_pixels(image: Any) -> int:
    return int(image.size[0] * image.size[1])


def decoded_batches(todo: Iterable[Any], batch_size: int, load: Callable[[Any], Any],
                    fail: Callable[[Any, str], None] | None, *,
                    block: Callable[[Any], Any] | None = None,
                    max_pixels: int | None = PIXELS_PER_BATCH,
                    pixels: Callable[[Any], int] = _pil_pixels,
                    ) -> Iterator[tuple[int, list[Any], list[Any]]]:
    """Decode ``todo`` with ``load(item)`` in batches of at most ``batch_size`` images and (unless
    ``max_pixels`` is None) at most ``max_pixels`` decoded pixels (``pixels(decoded)``, a PIL
    image's width x height by default); yields ``(inputs consumed, [item], [decoded])``.

    An item whose ``load`` raises is reported through ``fail(item, reason)`` and left out (the
    batch is filled with the next readable items); with ``fail=None`` its error is raised. With
    ``block``, a batch never holds items of two blocks (``block(item)`` differs): a run cuts its
    batches at fixed input positions, so the images that share a forward pass are the same
    whatever the number of processes (and so are
    the numbers, to the last bit)."""
    ok: list[Any] = []
    decoded: list[Any] = []
    n_pixels = consumed = 0
    current: Any = None
    for item in todo:
        if block is not None:
            b = block(item)
            if b != current and (decoded or consumed):
                yield consumed, ok, decoded
                ok, decoded, n_pixels, consumed = [], [], 0, 0
            current = b
        consumed += 1
        try:
            value = load(item)
        except Exception as exc:  # noqa: BLE001 - one bad image never kills the run
            if fail is None:
                raise
            fail(item, failure_reason(exc))
            continue
        ok.append(item)
        decoded.append(value)
        if max_pixels is not None:
            n_pixels += pixels(value)
        if len(decoded) >= batch_size or (max_pixels is not None and n_pixels >= max_pixels):
            yield consumed, ok, decoded
            ok, decoded, n_pixels, consumed = [], [], 0, 0
    if decoded or consumed:
        yield consumed, ok, decoded


def prefetch(batches: Iterator[Any], depth: int = PREFETCH_BATCHES) -> Iterator[Any]:
    """Run the generator ``batches`` in a thread, ``depth`` items ahead of the consumer (image
    decoding overlaps the forward pass). Its exceptions are raised here; when the consumer
    stops early (an error, Ctrl-C) the thread is stopped and joined."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in batches:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=work, name="camloc-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


#: One decoded input of :func:`loader_batches`: its position in the list, the network input
#: (``None`` when it failed), the decoded ``(width, height)`` and the reason it failed (``""``).
Decoded = tuple[int, "torch.Tensor | None", tuple[int, int], str]


class DecodeSamples(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Decodes and preprocesses items (anything with a ``path``) to network input, in DataLoader
    workers; a failure comes back as its reason.

    With ``check_size`` (labelled datasets whose metadata gives each image's size), an image
    whose decoded size disagrees with it is a failure (its boxes would be rescaled wrongly),
    never scored silently."""

    def __init__(self, items: Sequence[Any], pre: Any, check_size: bool = False) -> None:
        self.items, self.pre, self.check_size = items, pre, check_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Decoded:
        from camloc.data.images import load_image, to_tensor

        s = self.items[i]
        try:
            img = load_image(s.path)
        except ImageError as exc:
            return i, None, (0, 0), exc.reason
        if self.check_size:
            why = s.size_mismatch(img.size)
            if why is not None:
                where = f"{s.size_source[0]}:{s.size_source[1]}: " if s.size_source else ""
                return i, None, img.size, f"{where}{why}"
        try:
            x, _ = to_tensor(img, self.pre)
        except ImageError as exc:  # too large once resized
            return i, None, img.size, exc.reason
        return i, x, img.size, ""


def _as_list(items: list[Any]) -> list[Any]:
    return items


def loader_batches(items: Sequence[Any], pre: Any, *, batch_size: int, workers: int = 0,
                   check_size: bool = False) -> Iterator[list[Decoded]]:
    """``items`` (anything with a ``path``; with ``check_size`` also ``size_mismatch`` and
    ``size_source``) decoded to network input under ``pre``, ``batch_size`` consecutive items
    per batch (failures included, see :class:`DecodeSamples`), in ``workers`` DataLoader
    processes (0: in this one), in order."""
    # (torch runs each worker with one thread; nothing else is set in the forked workers: calling
    # into OpenCV's thread pool in a child forked from a process that has used it can deadlock)
    yield from torch.utils.data.DataLoader(DecodeSamples(items, pre, check_size),
                                           batch_size=batch_size, shuffle=False,
                                           num_workers=workers, collate_fn=_as_list)


def split_failures(chunk: Sequence[Decoded], items: Sequence[Any],
                   failed: list[dict[str, str]], offset: int = 0) -> list[Decoded]:
    """The readable entries of ``chunk``; each unreadable one is appended to ``failed`` as
    ``{"path", "image_id", "error"}`` (``items[offset + i]`` is entry ``i``'s item)."""
    good = []
    for entry in chunk:
        i, x, _, err = entry
        if x is None:
            item = items[offset + i]
            failed.append({"path": str(item.path), "image_id": item.image_id, "error": err})
        else:
            good.append(entry)
    return good


def stack_inputs(xs: Sequence[torch.Tensor], device: torch.device | str | None = None,
                 channels_last: bool = False) -> torch.Tensor:
    """One ``(B, 3, H, W)`` batch of network inputs, on ``device`` (left where it is when None),
    in channels-last memory layout when asked."""
    x = torch.stack(list(xs))
    if device is not None:
        x = x.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
