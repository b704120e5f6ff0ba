"""``camloc train``: train a GAP network from image-level labels (also under torchrun)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer


def _parse_opts(items: list[str] | None) -> dict[str, Any]:
    from camloc.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--arch-opt {item!r}: expected KEY=VALUE, e.g. last_stride=1")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _parse_scale(text: str) -> tuple[float, float]:
    from camloc.errors import ConfigError

    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--crop-scale {text!r}: expected MIN or MIN,MAX (e.g. 0.08,1)") from exc
    if len(vals) == 1:
        return vals[0], 1.0
    if len(vals) == 2:
        return vals[0], vals[1]
    raise ConfigError(f"--crop-scale {text!r}: expected MIN or MIN,MAX")


class _RichReporter:
    """Progress bars for the training loop (rank 0 only)."""

    def __init__(self) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        from camloc.commands.common import console

        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 transient=True)
        self.task: Any = None
        self.epochs = 0

    def __enter__(self) -> _RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(text)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.epochs = epochs
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps,
                                           completed=done, info="")

    def step(self, done: int, loss: float, acc: float, lr: float) -> None:
        self.progress.update(self.task, completed=done,
                             info=f"loss {loss:.3f} acc {acc:.0f}% lr {lr:.2g}")

    def start_eval(self, epoch: int, images: int) -> None:
        self.progress.update(self.task, info=f"validating on {images} images ...")

    def end_epoch(self, record: dict[str, Any]) -> None:
        parts = [f"epoch {record['epoch']}/{self.epochs}", f"loss {record['train_loss']:.4f}",
                 f"acc {record['train_acc']:.1f}%"]
        for key, label in (("val_top1", "top-1"), ("val_gt_known", "GT-known"),
                           ("val_maxboxacc_v2", "MaxBoxAccV2")):
            if record.get(key) is not None:
                parts.append(f"{label} {record[key]:.1f}")
        parts.append(f"{record['seconds']:.1f}s")
        if record.get("best"):
            parts.append("[green]best[/green]")
        self.console.print("  ".join(parts))


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        dataset: Path = typer.Argument(..., help="Dataset folder or annotation file (any format "
                                                 "camloc reads; labels only are used)."),
        arch: str = typer.Option(..., "--arch", "-a",
                                 help="vgg16-gap, alexnet-gap, googlenet-gap, resnet18/34/50-gap, "
                                      "tiny-cnn, or any:NAME (a torchvision/timm GAP classifier)."),
        arch_opt: list[str] = typer.Option(None, "--arch-opt",
                                           help="Architecture option KEY=VALUE (repeatable), e.g. "
                                                "last_stride=2, width=16."),
        pretrained: bool = typer.Option(False, help="Start from ImageNet weights (downloaded "
                                                    "once)."),
        pool: str = typer.Option("gap", help="gap (global average) or gmp (global max) pooling."),
        epochs: int = typer.Option(10, help="Epochs."),
        batch_size: int = typer.Option(32, help="Images per step and process."),
        lr: float = typer.Option(0.01, help="Backbone learning rate."),
        new_lr_mult: float = typer.Option(None, help="Learning-rate factor of the new layers "
                                                     "(default 10 with --pretrained, else 1)."),
        weight_decay: float = typer.Option(1e-4, help="SGD weight decay."),
        schedule: str = typer.Option("cosine", help="cosine, step (x0.1 every --step-epochs) or "
                                                    "constant."),
        step_epochs: int = typer.Option(30, help="Epochs between x0.1 steps (--schedule step)."),
        warmup_epochs: float = typer.Option(0.0, help="Linear learning-rate warm-up, in epochs."),
        input_size: int = typer.Option(224, help="Training and validation input size (square)."),
        crop_scale: str = typer.Option("0.08,1", help="RandomResizedCrop area range MIN,MAX."),
        val_split: str = typer.Option("auto", help="auto (val, else test, else 10% held out), a "
                                                   "split name, a fraction such as 0.1, or none."),
        train_split: str = typer.Option("auto", help="Training split (auto: 'train' if the "
                                                     "dataset has splits)."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (see docs/datasets.md)."),
        select: str = typer.Option("auto", help="Best-epoch metric: top1, gt_known, maxboxacc_v2 "
                                                "(auto: maxboxacc_v2 with boxes, else top1)."),
        out: Path = typer.Option(Path("camloc-train"), "--out", "-o", help="Output folder."),
        resume: bool = typer.Option(False, help="Continue the run in --out from train_state.pt."),
        overwrite: bool = typer.Option(False, help="Start again even if --out holds a run."),
        save_every: int = typer.Option(0, help="Also save the resume state every N steps."),
        max_steps: int = typer.Option(None, help="Stop after N optimizer steps in total (saved; "
                                                 "--resume continues)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N (torchrun: the "
                                                "local rank's GPU)."),
        seed: int = typer.Option(0, help="Random seed (init, data order, augmentation)."),
        workers: int = typer.Option(2, help="DataLoader worker processes."),
        amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on "
                                                              "CUDA)."),
        eval_interval: float = typer.Option(0.01, help="CAM threshold step for localization "
                                                       "metrics."),
        eval_batch_size: int = typer.Option(None, help="Validation batch size."),
        name: str = typer.Option(None, help="Model name written to spec.json."),
    ) -> None:
        """Train a GAP classifier from image labels; validate CAM localization every epoch.

        Writes OUT/ (best model, loadable with `camloc explain --model OUT`), OUT/last/,
        OUT/train_state.pt, OUT/log.csv and OUT/metrics.json. Under
        `torchrun --nproc_per_node=N -m camloc train ...` it trains with DistributedDataParallel.
        """
        from camloc.train import TrainConfig, train

        cfg = TrainConfig(
            dataset=dataset, arch=arch, out=out, arch_kwargs=_parse_opts(arch_opt),
            pretrained=pretrained, pool=pool, epochs=epochs, batch_size=batch_size, lr=lr,
            new_lr_mult=new_lr_mult, weight_decay=weight_decay, schedule=schedule,
            step_epochs=step_epochs, warmup_epochs=warmup_epochs, input_size=input_size,
            crop_scale=_parse_scale(crop_scale), dataset_format=fmt, train_split=train_split,
            val_split=val_split, select=select, eval_interval=eval_interval,
            eval_batch_size=eval_batch_size, device=device, seed=seed, workers=workers, amp=amp,
            save_every=save_every, max_steps=max_steps, resume=resume, overwrite=overwrite,
            name=name)
        main = int(os.environ.get("RANK", "0")) == 0
        if main:
            with _RichReporter() as rep:
                result = train(cfg, reporter=rep)
        else:
            result = train(cfg)
        if not main:
            return
        from camloc.commands.common import console

        state = "finished" if result.completed else "stopped early (--resume continues)"
        best = (f"best epoch {result.best_epoch} ({result.select} {result.best_value:.4g})"
                if result.best_value is not None else
                f"best epoch {result.best_epoch}" if result.best_epoch else
                "no best epoch" if result.epochs_done else "no epoch finished")
        console.print(f"[bold]camloc train[/bold]: {state} after {result.epochs_done} epoch(s), "
                      f"{result.global_step} steps in {result.seconds:.1f}s on {result.device}"
                      f"{f' x{result.world_size}' if result.world_size > 1 else ''}; {best}")
        if result.select != "none" and result.best_epoch is None and result.epochs_done:
            console.print(f"[red]no best model[/red]: validation gave no {result.select} value "
                          f"in any epoch (see {result.out / 'metrics.json'}); the last epoch's "
                          f"model is in {result.out / 'last'}")
        else:
            console.print(f"model: {result.out}  last: {result.out / 'last'}  log: "
                          f"{result.out / 'log.csv'}")
        if result.val_failed:
            console.print(f"[red]{len(result.val_failed)} validation image(s) could not be "
                          f"read[/red] (listed in {result.out / 'metrics.json'})")
        if result.exit_code:
            raise typer.Exit(result.exit_code)
