"""``train``: fit a GAP network on image-level labels, validate CAM localization every epoch.

The recipe is the CAM paper's: a backbone converted to ``features -> GAP -> linear``
(:mod:`camloc.models.archs`), SGD with momentum 0.9 and weight decay, the new layers at 10x the
backbone's learning rate when fine-tuning, RandomResizedCrop + horizontal flip for training and a
plain resize (no crop) for validation. After every epoch the model is evaluated with
:func:`camloc.evaluation.evaluate.evaluate_model` (top-1, GT-known localization, MaxBoxAccV2) and the best
epoch by ``select`` is kept.

Output folder (only rank 0 writes; every file atomically)::

    out/spec.json, out/model.safetensors    best model (camloc.load_model(out))
    out/last/{spec.json,model.safetensors}  model after the last finished epoch
    out/train_state.pt                      resume state (see --resume)
    out/log.csv                             one row per epoch
    out/metrics.json                        best/last metrics, history, settings, versions

Resuming (``resume=True``) continues from ``train_state.pt``, written at every epoch end and, with
``save_every=N``, every N steps. Data order and augmentation are functions of (seed, epoch, index),
the RNG states are restored and deterministic algorithms are used, so a resumed run ends with the
same weights as an uninterrupted one (same seed, machine, world size and thread count).

>>> from camloc.data.synth import make_synth
>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> data = make_synth(tmp / "synth", classes=2, images=24, size=48)
>>> res = train(TrainConfig(dataset=data, arch="tiny-cnn", arch_kwargs={"width": 8}, epochs=1,
...                         batch_size=8, input_size=48, out=tmp / "run", workers=0))
>>> res.completed, (tmp / "run" / "spec.json").is_file()
(True, True)
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from camloc.errors import CheckpointError, ConfigError, DatasetError
from camloc.io import (atomic_write_json, atomic_write_text, dumps, folder_lock,
                       refuse_symlink, remove_stale_temps, versions)
from camloc.models.spec import Preprocess
from camloc.train.checkpoint import (STATE_FILE, WEIGHTS_FILE, cpu_state_dict, load_train_state,
                                     rng_state, save_train_state, set_rng_state, unwrap,
                                     write_model_dir)
from camloc.train.config import TrainConfig
from camloc.train.data import (CropSettings, TrainImages, check_batch, collate, epoch_batches,
                               steps_per_epoch)
from camloc.distributed import DistContext
from camloc.train.schedule import LRSchedule

__all__ = ["train", "TrainResult", "TrainReporter", "open_train_val", "LOG_COLUMNS"]

#: Columns of ``log.csv``.
LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_top1", "val_top5",
               "val_gt_known", "val_maxboxacc_v2", "val_pxap", "val_piou", "seconds", "best")

#: Keys of the state that must match for ``--resume`` to continue a run.
_RESUME_KEYS = ("arch", "arch_kwargs", "pool", "batch_size", "seed", "input_size", "crop_scale",
                "lr", "new_lr_mult", "momentum", "weight_decay", "schedule", "step_epochs",
                "warmup_epochs", "pretrained", "select", "val_split", "eval_interval")


class TrainReporter(Protocol):
    """Progress callbacks (called on rank 0 only). All methods are optional no-ops by default."""

    def message(self, text: str) -> None: ...

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...

    def step(self, done: int, loss: float, acc: float, lr: float) -> None: ...

    def start_eval(self, epoch: int, images: int) -> None: ...

    def end_epoch(self, record: dict[str, Any]) -> None: ...


class _Silent:
    def message(self, text: str) -> None:
        pass

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        pass

    def step(self, done: int, loss: float, acc: float, lr: float) -> None:
        pass

    def start_eval(self, epoch: int, images: int) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        pass


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    out: Path
    completed: bool  # False when max_steps stopped the run early (resume to continue)
    epochs_done: int
    global_step: int
    best_epoch: int | None
    select: str
    best_value: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    world_size: int = 1
    device: str = "cpu"
    val_failed: list[dict[str, str]] = field(default_factory=list)  # unreadable validation images

    @property
    def last(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    @property
    def exit_code(self) -> int:
        """1 when validation images could not be read or no epoch could be chosen as the best
        (the run finished; see metrics.json), else 0."""
        no_best = self.select != "none" and self.best_epoch is None and self.epochs_done > 0
        return 1 if self.val_failed or no_best else 0


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------


def _no_such_split(exc: Exception) -> bool:
    """Whether opening a split failed only because the dataset has no such split (or none)."""
    text = str(exc)
    return "no split" in text or "has no splits" in text or "split folder" in text


def _open(cfg: TrainConfig, split: str | None) -> Any:
    from camloc.data.datasets import open_dataset

    return open_dataset(cfg.dataset, format=cfg.dataset_format, split=split)


def open_train_val(cfg: TrainConfig) -> tuple[Any, Any | None, str]:
    """Open the training set and the validation set ``cfg`` asks for.

    Returns ``(train, val or None, description of val)``. ``val_split``: ``"auto"`` (the
    dataset's ``val`` split, else ``test``, else 10% of the training images held out), a split
    name, a fraction such as ``"0.1"`` (held out of the training images with the seed), or
    ``"none"``.

    Raises:
        DatasetError: the training set is empty, unlabelled, or has fewer than two classes.
    """
    from camloc.errors import CamlocError

    if cfg.train_split == "auto":
        try:
            train_ds, train_split = _open(cfg, "train"), "train"
        except CamlocError as first:
            try:
                train_ds, train_split = _open(cfg, None), None
            except CamlocError as second:
                # report the problem that is not merely "this dataset has no 'train' split"
                raise (second if _no_such_split(first) else first) from None
    else:
        split = None if cfg.train_split in ("none", "") else cfg.train_split
        train_ds, train_split = _open(cfg, split), split
    _check_training_set(train_ds, cfg)
    val_ds, desc = None, "none"
    frac = TrainConfig.val_fraction(cfg.val_split)
    choice = cfg.val_split
    if choice == "auto":
        if train_split is not None:
            for name in ("val", "test"):
                try:
                    val_ds = _open(cfg, name)
                except CamlocError:
                    continue
                desc = f"split {name!r}"
                break
        if val_ds is None:
            frac = 0.1
    elif choice != "none" and frac is None:
        val_ds, desc = _open(cfg, choice), f"split {choice!r}"
    if frac is not None and val_ds is None:
        n = len(train_ds)
        k = int(round(n * frac))
        if k < 1 or n - k < 2:
            raise DatasetError(f"val_split={frac}: {n} training images are too few to hold out "
                               f"a validation set; pass --val-split none or a split name")
        perm = np.random.default_rng([cfg.seed, 104729]).permutation(n)
        held = np.sort(perm[:k])
        keep = np.sort(perm[k:])
        val_ds, train_ds = train_ds.subset(held), train_ds.subset(keep)
        desc = f"{k} images ({frac:g}) held out of the training set"
        _check_training_set(train_ds, cfg)
    if val_ds is not None:
        if len(val_ds) == 0:
            raise DatasetError(f"{cfg.dataset}: the validation set ({desc}) is empty")
        if val_ds.num_classes != train_ds.num_classes:
            raise DatasetError(f"{cfg.dataset}: the validation set ({desc}) has "
                               f"{val_ds.num_classes} classes, the training set "
                               f"{train_ds.num_classes}")
        missing = [s for s in val_ds.samples if s.label is None]
        if missing:
            raise DatasetError(f"{cfg.dataset}: {len(missing)} validation image(s) have no label",
                               [(str(s.path), 0, "no class label") for s in missing])
    return train_ds, val_ds, desc


def _check_training_set(ds: Any, cfg: TrainConfig) -> None:
    where = f"{cfg.dataset}" + (f" (split {ds.split!r})" if getattr(ds, "split", None) else "")
    if len(ds) == 0:
        raise DatasetError(f"{where}: the training set has no images")
    unlabelled = [s for s in ds.samples if s.label is None]
    if unlabelled:
        raise DatasetError(
            f"{where}: {len(unlabelled)} of {len(ds)} training images have no class label; "
            f"training needs an image-level label for every image",
            [(str(s.path), 0, "no class label") for s in unlabelled])
    if ds.num_classes < 2:
        raise DatasetError(f"{where}: {ds.num_classes} class ({', '.join(ds.class_names)}); "
                           f"a classifier needs at least two classes")
    present = {int(s.label) for s in ds.samples}
    if len(present) < 2:
        raise DatasetError(f"{where}: every training image has the same label "
                           f"({ds.class_names[next(iter(present))]!r}); a classifier needs "
                           f"examples of at least two classes")
    if len(ds) < 2:
        raise DatasetError(f"{where}: one training image is not enough to train")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


@contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_det = torch.backends.cudnn.deterministic
    try:
        if enabled:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        else:
            torch.backends.cudnn.benchmark = device.type == "cuda"
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    seed = int(info.seed % 2**32) if info is not None else worker_id
    random.seed(seed)
    np.random.seed(seed)


def _preprocess(cfg: TrainConfig) -> Preprocess:
    return Preprocess(input_size=(cfg.input_size, cfg.input_size), fit="stretch",
                      interpolation="bilinear")


def _model_spec(cfg: TrainConfig, train_ds: Any, epoch: int, step: int,
                metrics: dict[str, Any] | None, select: str) -> dict[str, Any]:
    from camloc import __version__

    name = cfg.name or f"{cfg.arch}-{Path(str(cfg.dataset)).name}"
    return {
        "format": "camloc-model", "version": 1, "name": name,
        "arch": cfg.arch, "arch_kwargs": dict(cfg.arch_kwargs),
        "num_classes": train_ds.num_classes, "class_names": list(train_ds.class_names),
        "pool": cfg.pool, "preprocess": _preprocess(cfg).to_dict(),
        "weights_file": WEIGHTS_FILE,
        "epoch": epoch, "step": step, "metrics": metrics or {}, "select": select,
        "pretrained": cfg.pretrained, "dataset": str(cfg.dataset), "seed": cfg.seed,
        "trained_with": f"camloc {__version__} train",
    }


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOG_COLUMNS)
    for rec in history:
        w.writerow([_fmt(rec.get(c)) for c in LOG_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def _flatten_report(report: dict[str, Any]) -> dict[str, float | None]:
    """Pull top-1/top-5, GT-known Loc (at the fixed threshold), MaxBoxAccV2, PxAP and PIoU (all
    in percent) out of an :func:`evaluate_model` report."""
    def get(*keys: str) -> float | None:
        node: Any = report
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        if isinstance(node, dict):
            for k in ("value", "at_fixed", "mean"):
                if k in node and isinstance(node[k], (int, float)):
                    return float(node[k])
            return None
        return float(node) if isinstance(node, (int, float)) else None

    out = {
        "top1": get("classification", "top1"),
        "top5": get("classification", "top5"),
        "gt_known": get("localization", "gt_known_loc", "at_fixed"),
        "maxboxacc_v2": get("localization", "maxboxacc_v2", "value"),
        "pxap": get("pxap", "pxap"),
        "piou": get("pxap", "piou"),
    }
    return {k: v for k, v in out.items() if v is not None or k in ("top1", "top5")}


# --------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------


def train(config: TrainConfig, reporter: TrainReporter | None = None) -> TrainResult:
    """Train ``config.arch`` on ``config.dataset``; write checkpoints and logs to ``config.out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel: each rank
    reads its share of every epoch's batches, rank 0 validates and writes, train loss/accuracy
    are summed over ranks.

    Raises:
        ConfigError: bad settings, an output folder holding another run (pass ``resume`` or
            ``overwrite``), AMP requested off CUDA, or a diverging loss.
        DatasetError: an empty or unlabelled training set, one class, missing or unreadable
            images.
        CheckpointError: a resume state that does not match the settings.
        WeightsError: pretrained weights cannot be downloaded.
    """
    cfg = config.checked()
    rep: TrainReporter = reporter if reporter is not None else _Silent()
    ctx = DistContext.from_env(cfg.device)
    try:
        with _deterministic(cfg.deterministic, ctx.device), ExitStack() as lock:
            return _train(cfg, ctx, rep if ctx.is_main else _Silent(), lock)
    finally:
        ctx.close()


def _check_out(cfg: TrainConfig) -> bool:
    """Whether ``cfg.out`` holds a run to resume; refuse an output folder that holds a run or a
    model (without ``resume`` or ``overwrite``)."""
    out = Path(cfg.out)
    if (out / STATE_FILE).is_file():
        if cfg.resume:
            return True
        if not cfg.overwrite:
            raise ConfigError(f"{out} already holds a training run ({STATE_FILE}); pass --resume "
                              f"to continue it or --overwrite to start again")
    elif out.is_dir() and (out / "spec.json").is_file() and not cfg.overwrite and not cfg.resume:
        raise ConfigError(f"{out} already holds a model; pass --overwrite or choose another --out")
    return False


def _train(cfg: TrainConfig, ctx: DistContext, rep: TrainReporter,
           lock: ExitStack) -> TrainResult:
    from camloc.models.archs import backbone_parameters, build_arch, new_parameters

    t_start = time.perf_counter()
    dev = ctx.device
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    train_ds, val_ds, val_desc = open_train_val(cfg)
    n_train = len(train_ds)
    select = cfg.select
    if val_ds is None:
        if select not in ("auto", "top1"):
            raise ConfigError(f"select={select!r} needs a validation set (val_split is none)")
        select = "none"
    elif select == "auto":
        select = "maxboxacc_v2" if val_ds.has_boxes else "top1"
    elif select in ("gt_known", "maxboxacc_v2") and not val_ds.has_boxes:
        raise ConfigError(f"select={select!r} needs boxes in the validation set ({val_desc}), "
                          f"which has none; use --select top1")

    use_amp = (dev.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    if use_amp and dev.type != "cuda":
        raise ConfigError("amp=True needs a CUDA device (mixed precision runs on CUDA only)")

    resume_state: dict[str, Any] | None = None
    _check_out(cfg)  # refuse before anything is created

    # model (rank 0 first when weights must be downloaded: one download, then the cache)
    _seed_everything(cfg.seed)
    if ctx.distributed and cfg.pretrained and not ctx.is_main:
        ctx.barrier()
    model = build_arch(cfg.arch, num_classes=train_ds.num_classes, pool=cfg.pool,
                       pretrained=cfg.pretrained, **cfg.arch_kwargs)
    if ctx.distributed and cfg.pretrained and ctx.is_main:
        ctx.barrier()
    model.to(dev)
    mult = cfg.new_lr_multiplier()
    groups = []
    old, new = backbone_parameters(model), new_parameters(model)
    if old:
        groups.append({"params": old, "lr": cfg.lr, "initial_lr": cfg.lr, "name": "backbone"})
    if new:
        groups.append({"params": new, "lr": cfg.lr * mult, "initial_lr": cfg.lr * mult,
                       "name": "new"})
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    spe = steps_per_epoch(n_train, cfg.batch_size, ctx.world_size)
    schedule = LRSchedule(cfg.schedule, total_steps=cfg.epochs * spe, steps_per_epoch=spe,
                          step_epochs=cfg.step_epochs,
                          warmup_steps=int(round(cfg.warmup_epochs * spe)))

    if ctx.is_main:
        # --out is locked for the rest of the run (a second run into it is refused), and checked
        # again under the lock: a run that finished meanwhile is not overwritten
        lock.enter_context(folder_lock(out))
        _check_out(cfg)
        refuse_symlink(out / "last")  # a link (to a folder elsewhere): refused now, not later
    if _check_out(cfg):
        resume_state = load_train_state(state_path)
    start_epoch, start_step, global_step = 0, 0, 0
    running = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": None, "value": None, "metrics": None, "report": None}
    if resume_state is not None:
        _check_resume(resume_state, cfg, ctx, n_train, train_ds)
        unwrap(model).load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        schedule.load_state_dict(resume_state["scheduler"])
        if resume_state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(resume_state["scaler"])
        set_rng_state(resume_state["rng"])
        start_epoch = int(resume_state["epoch"])
        start_step = int(resume_state["step_in_epoch"])
        global_step = int(resume_state["global_step"])
        history = list(resume_state.get("history", []))
        best = dict(resume_state.get("best", best))
        if ctx.is_main:
            r = resume_state.get("running", {})
            running.update({k: float(v) for k, v in r.items() if k in running})
        rep.message(f"resuming {out} at epoch {start_epoch + 1}, step {start_step} of {spe} "
                    f"(global step {global_step})")
    else:
        if cfg.resume:
            rep.message(f"--resume: {state_path} does not exist yet; starting a new run")
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
    if ctx.is_main and out.is_dir():
        # temporary files of an atomic write that a killed run left behind (never read; only
        # camloc's own: see camloc.io.is_temp_file)
        remove_stale_temps(out)
        if (out / "last").is_dir() and not (out / "last").is_symlink():
            remove_stale_temps(out / "last")
    ctx.barrier()

    ddp_model: nn.Module = model
    if ctx.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)

    images = TrainImages([str(s.path) for s in train_ds.samples],
                         [int(s.label) for s in train_ds.samples],
                         CropSettings(size=cfg.input_size, scale=cfg.crop_scale), cfg.seed)
    head = None
    val_failed: list[dict[str, str]] = []
    eval_module: nn.Module = model
    completed = True
    amp_note = f", AMP {str(amp_dtype).split('.')[-1]}" if use_amp else ""
    rep.message(f"training {cfg.arch} ({cfg.pool} pooling) on {n_train} images, "
                f"{train_ds.num_classes} classes, {spe} steps/epoch x {cfg.epochs} epochs, "
                f"world {ctx.world_size}, {dev}{amp_note}; validation: {val_desc}; "
                f"best by {select}")

    def state_dict(epoch: int, step_in_epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "steps_per_epoch": spe, "world_size": ctx.world_size,
            "model": cpu_state_dict(model), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng_state(), "running": dict(running), "history": history, "best": best,
            "config": cfg.to_dict(), "num_train": n_train,
            "class_names": list(train_ds.class_names),
        }

    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and global_step >= cfg.max_steps:
            completed = False
            break
        first = start_step if epoch == start_epoch else 0
        if epoch != start_epoch:
            running = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}
        batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, epoch, ctx.rank,
                                ctx.world_size)[first:]
        rep.start_epoch(epoch, cfg.epochs, spe, first)
        t0 = time.perf_counter()
        model.train()
        stopped = False
        if batches:
            loader = torch.utils.data.DataLoader(
                images, batch_sampler=batches, num_workers=cfg.workers, collate_fn=collate,
                pin_memory=dev.type == "cuda", worker_init_fn=_worker_init,
                generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
                persistent_workers=False)
            for k, batch in enumerate(loader, start=first):
                x, y = check_batch(batch)
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                factor = schedule.apply(optimizer, global_step)
                with torch.autocast(device_type="cuda", dtype=amp_dtype, enabled=use_amp):
                    logits = ddp_model(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                global_step += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise ConfigError(f"training diverged: the loss is {lv} at epoch {epoch + 1}, "
                                      f"step {k + 1}; lower --lr (now {cfg.lr})")
                n = int(y.shape[0])
                correct = int((logits.detach().argmax(1) == y).sum())
                running["loss_sum"] += lv * n
                running["correct"] += correct
                running["count"] += n
                rep.step(k + 1, lv, 100.0 * correct / max(1, n), cfg.lr * factor)
                last_in_epoch = k + 1 == spe
                hit_max = cfg.max_steps is not None and global_step >= cfg.max_steps
                if not last_in_epoch and (hit_max or (cfg.save_every
                                                      and global_step % cfg.save_every == 0)):
                    running["seconds"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    _save_mid_epoch(ctx, state_path, state_dict, running, epoch, k + 1)
                    if hit_max:
                        stopped = True
                        break
            del loader
        if stopped:
            completed = False
            break
        # ---- epoch end: reduce, validate, write
        running["seconds"] += time.perf_counter() - t0
        loss_sum, correct_sum, count = ctx.all_sum(
            [running["loss_sum"], running["correct"], running["count"]])
        record: dict[str, Any] = {
            "epoch": epoch + 1, "step": global_step,
            "lr": cfg.lr * schedule.factor(max(0, global_step - 1)),
            "train_loss": loss_sum / max(1.0, count),
            "train_acc": 100.0 * correct_sum / max(1.0, count),
        }
        metrics, report = None, None
        if val_ds is not None:
            rep.start_eval(epoch, len(val_ds))
            if head is None:
                from camloc.models.heads import find_gap_head

                eval_module = model  # evaluate_model feeds the network its own input size
                head = find_gap_head(eval_module, (cfg.input_size, cfg.input_size))
            _sync_buffers(model, ctx)
            report = _evaluate(eval_module, head, cfg, ctx, train_ds, val_ds, epoch, global_step)
            if ctx.is_main:
                metrics = _flatten_report(report)
                failed_now = list((report or {}).get("failed") or [])
                if failed_now and not val_failed:  # said once per run
                    n = int((report or {}).get("counts", {}).get("failed", len(failed_now)))
                    shown = "; ".join(f"{f.get('path')}: {f.get('error')}" for f in failed_now[:5])
                    rep.message(f"validation: {n} image(s) could not be read and are left out "
                                f"of the metrics: {shown}" + (" ..." if n > 5 else ""))
                val_failed = failed_now
            metrics = ctx.broadcast_object(metrics)
            for key, v in (metrics or {}).items():
                record[f"val_{key}"] = v
        record["seconds"] = ctx.all_max(running["seconds"] + 0.0)
        value = None if select == "none" else (metrics or {}).get(select)
        if value is not None and not math.isfinite(value):
            value = None
        # an epoch without a value (every validation image unreadable) is never the best
        improved = select == "none" or (value is not None and (
            best["value"] is None or value > best["value"]))
        if select != "none" and value is None:
            rep.message(f"epoch {epoch + 1}: validation gave no {select} value, so this epoch "
                        f"cannot be chosen as the best")
        if improved:
            best = {"epoch": epoch + 1, "value": value, "metrics": metrics, "report": report}
        record["best"] = best["epoch"] == epoch + 1
        history.append(record)
        if ctx.is_main:
            spec = _model_spec(cfg, train_ds, epoch + 1, global_step, metrics, select)
            write_model_dir(out / "last", model, spec)
            if improved:
                write_model_dir(out, model, spec)
            running = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}
            save_train_state(state_path, state_dict(epoch + 1, 0))
            _write_log(out / "log.csv", history)
            _write_metrics(out / "metrics.json", cfg, ctx, history, best, select, val_desc,
                           report, completed=epoch + 1 == cfg.epochs)
        ctx.barrier()
        rep.end_epoch(record)
    return TrainResult(out=out, completed=completed, epochs_done=len(history),
                       global_step=global_step, best_epoch=best.get("epoch"), select=select,
                       best_value=best.get("value"), history=history,
                       seconds=time.perf_counter() - t_start, world_size=ctx.world_size,
                       device=str(dev), val_failed=val_failed)


def _save_mid_epoch(ctx: DistContext, path: Path, state_fn: Any, running: dict[str, float],
                    epoch: int, step_in_epoch: int) -> None:
    """Save a mid-epoch resume state; the epoch's running sums are summed over ranks and kept by
    rank 0 (the others restart from zero), so the epoch's totals come out the same."""
    sums = ctx.all_sum([running["loss_sum"], running["correct"], running["count"]])
    if ctx.is_main:
        saved = dict(running)
        running.update(loss_sum=sums[0], correct=sums[1], count=sums[2])
        save_train_state(path, state_fn(epoch, step_in_epoch))
        running.update(saved)
    ctx.barrier()


def _check_resume(state: dict[str, Any], cfg: TrainConfig, ctx: DistContext, n_train: int,
                  train_ds: Any) -> None:
    saved = state.get("config", {})
    now = cfg.to_dict()
    diffs = [f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in _RESUME_KEYS
             if k in saved and saved.get(k) != now.get(k)]
    if int(state.get("world_size", 1)) != ctx.world_size:
        diffs.append(f"world size: saved {state.get('world_size')}, now {ctx.world_size}")
    if int(state.get("num_train", n_train)) != n_train:
        diffs.append(f"training images: saved {state.get('num_train')}, now {n_train}")
    if list(state.get("class_names", train_ds.class_names)) != list(train_ds.class_names):
        diffs.append("class names differ")
    if int(saved.get("epochs", cfg.epochs)) != cfg.epochs:
        diffs.append(f"epochs: saved {saved.get('epochs')}, now {cfg.epochs} (the learning-rate "
                     f"schedule depends on it)")
    if diffs:
        raise CheckpointError(f"{Path(cfg.out) / STATE_FILE}: cannot resume with different "
                              f"settings: " + "; ".join(diffs))


def _sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank before evaluating."""
    if ctx.distributed:
        import torch.distributed as tdist

        for buf in model.buffers():
            tdist.broadcast(buf, src=0)


def _evaluate(eval_model: nn.Module, head: Any, cfg: TrainConfig, ctx: DistContext,
              train_ds: Any, val_ds: Any, epoch: int, step: int) -> dict[str, Any] | None:
    """Validation report (rank 0; None on the other ranks). Under torchrun each rank scores its
    shard of the validation set and the accumulators are merged exactly on rank 0."""
    import json

    from camloc.evaluation.evaluate import build_report, evaluate_state
    from camloc.models.loader import CamModel
    from camloc.models.spec import ModelSpec

    spec = ModelSpec(cfg.name or cfg.arch, train_ds.num_classes, list(train_ds.class_names),
                     _preprocess(cfg), source=f"{cfg.out} (epoch {epoch + 1}, step {step})",
                     extra={"arch": cfg.arch, "pool": cfg.pool})
    cam_model = CamModel(eval_model, spec, head)
    bs = cfg.eval_batch_size or max(cfg.batch_size, 1)
    part = val_ds.shard(ctx.rank, ctx.world_size) if ctx.distributed else val_ds
    was_training = eval_model.training
    try:
        if len(part):
            state = evaluate_state(cam_model, part, interval=cfg.eval_interval, batch_size=bs,
                                   workers=min(cfg.workers, 4))
        else:
            state = None
    finally:
        eval_model.train(was_training)
    states = ctx.gather_objects(state) if ctx.distributed else [state]
    if not ctx.is_main:
        return None
    merged = None
    for st in states:
        if st is None:
            continue
        merged = st if merged is None else merged.merge(st)
    report = build_report(merged, cam_model, val_ds, "wsol", cfg.eval_interval)
    # plain JSON types only (the report also travels inside train_state.pt)
    return json.loads(dumps(report))  # strict JSON: NaN -> None


def _write_metrics(path: Path, cfg: TrainConfig, ctx: DistContext, history: list[dict[str, Any]],
                   best: dict[str, Any], select: str, val_desc: str, last_report: Any,
                   completed: bool) -> None:
    atomic_write_json(path, {
        "select": select,
        "validation": val_desc,
        "completed": completed,
        "best": {"epoch": best.get("epoch"), "value": best.get("value"),
                 "metrics": best.get("metrics"), "report": best.get("report")},
        "last": {"epoch": history[-1]["epoch"] if history else None,
                 "metrics": {k[4:]: v for k, v in (history[-1] if history else {}).items()
                             if k.startswith("val_")},
                 "report": last_report},
        "history": history,
        "config": cfg.to_dict(),
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "versions": versions(),
    })
