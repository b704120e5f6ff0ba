"""``camloc train``: train a GAP network from image-level labels (also under torchrun).
Parse -> call :func:`camloc.train.run.run_training` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from camloc.commands.options import Format, Out, Workers

if TYPE_CHECKING:  # pragma: no cover
    from camloc.train import TrainResult


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


_Dataset = Annotated[Path, typer.Argument(help=(
    "Dataset folder or annotation file (any format camloc reads; labels only are used)."))]
_Arch = Annotated[str, typer.Option("--arch", "-a", help=(
    "vgg16-gap, alexnet-gap, googlenet-gap, resnet18/34/50-gap, tiny-cnn, or any:NAME (a "
    "torchvision/timm GAP classifier)."))]
_ArchOpt = Annotated[list[str], typer.Option("--arch-opt", help=(
    "Architecture option KEY=VALUE (repeatable), e.g. last_stride=2, width=16."))]
_Pretrained = Annotated[bool, typer.Option(help="Start from ImageNet weights (downloaded once).")]
_Pool = Annotated[str, typer.Option(help="gap (global average) or gmp (global max) pooling.")]
_Epochs = Annotated[int, typer.Option(help="Epochs.")]
_BatchSize = Annotated[int, typer.Option(help="Images per step and process.")]
_Lr = Annotated[float, typer.Option(help="Backbone learning rate.")]
_NewLrMult = Annotated[float, typer.Option(help=(
    "Learning-rate factor of the new layers (default 10 with --pretrained, else 1)."))]
_WeightDecay = Annotated[float, typer.Option(help="SGD weight decay.")]
_Schedule = Annotated[str, typer.Option(help=(
    "cosine, step (x0.1 every --step-epochs) or constant."))]
_StepEpochs = Annotated[int, typer.Option(help="Epochs between x0.1 steps (--schedule step).")]
_WarmupEpochs = Annotated[float, typer.Option(help="Linear learning-rate warm-up, in epochs.")]
_InputSize = Annotated[int, typer.Option(help="Training and validation input size (square).")]
_CropScale = Annotated[str, typer.Option(help="RandomResizedCrop area range MIN,MAX.")]
_ValSplit = Annotated[str, typer.Option(help=(
    "auto (val, else test, else 10% held out), a split name, a fraction such as 0.1, or none."))]
_TrainSplit = Annotated[str, typer.Option(help=(
    "Training split (auto: 'train' if the dataset has splits)."))]
_Select = Annotated[str, typer.Option(help=(
    "Best-epoch metric: top1, gt_known, maxboxacc_v2 (auto: maxboxacc_v2 with boxes, else "
    "top1)."))]
_Resume = Annotated[bool, typer.Option(help="Continue the run in --out from train_state.pt.")]
_Overwrite = Annotated[bool, typer.Option(help="Start again even if --out holds a run.")]
_SaveEvery = Annotated[int, typer.Option(help="Also save the resume state every N steps.")]
_MaxSteps = Annotated[int, typer.Option(help=(
    "Stop after N optimizer steps in total (saved; --resume continues)."))]
_Device = Annotated[str, typer.Option(help=(
    "auto, cpu, cuda, cuda:N (torchrun: the local rank's GPU)."))]
_Seed = Annotated[int, typer.Option(help="Random seed (init, data order, augmentation).")]
_Amp = Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision (default: on CUDA).")]
_EvalInterval = Annotated[float, typer.Option(help=(
    "CAM threshold step for localization metrics."))]
_EvalBatchSize = Annotated[int, typer.Option(help="Validation batch size.")]
_Name = Annotated[str, typer.Option(help="Model name written to spec.json.")]


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        dataset: _Dataset, arch: _Arch, arch_opt: _ArchOpt = None,
        pretrained: _Pretrained = False, pool: _Pool = "gap", epochs: _Epochs = 10,
        batch_size: _BatchSize = 32, lr: _Lr = 0.01, new_lr_mult: _NewLrMult = None,
        weight_decay: _WeightDecay = 1e-4, schedule: _Schedule = "cosine",
        step_epochs: _StepEpochs = 30, warmup_epochs: _WarmupEpochs = 0.0,
        input_size: _InputSize = 224, crop_scale: _CropScale = "0.08,1",
        val_split: _ValSplit = "auto", train_split: _TrainSplit = "auto", fmt: Format = "auto",
        select: _Select = "auto", out: Out = Path("camloc-train"), resume: _Resume = False,
        overwrite: _Overwrite = False, save_every: _SaveEvery = 0, max_steps: _MaxSteps = None,
        device: _Device = "auto", seed: _Seed = 0, workers: Workers = 2, amp: _Amp = None,
        eval_interval: _EvalInterval = 0.01, eval_batch_size: _EvalBatchSize = None,
        name: _Name = None,
    ) -> None:
        """Train a GAP classifier from image labels; validate CAM localization every epoch.

        Writes OUT/ (best model, loadable with `camloc explain --model OUT`), OUT/last/,
        OUT/train_state.pt, OUT/log.csv and OUT/metrics.json. Under
        `torchrun --nproc_per_node=N -m camloc train ...` it trains with DistributedDataParallel.
        """
        from camloc.train.run import run_training

        result = run_training(
            dataset, arch, arch_opts=arch_opt, crop_scale=crop_scale, reporter=_RichReporter,
            out=out, pretrained=pretrained, pool=pool, epochs=epochs, batch_size=batch_size,
            lr=lr, new_lr_mult=new_lr_mult, weight_decay=weight_decay, schedule=schedule,
            step_epochs=step_epochs, warmup_epochs=warmup_epochs, input_size=input_size,
            dataset_format=fmt, train_split=train_split, val_split=val_split, select=select,
            eval_interval=eval_interval, eval_batch_size=eval_batch_size, device=device,
            seed=seed, workers=workers, amp=amp, save_every=save_every, max_steps=max_steps,
            resume=resume, overwrite=overwrite, name=name)
        if result is None:  # a torchrun rank other than 0: rank 0 reports
            return
        _report(result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _report(result: TrainResult) -> None:
    """The run's summary on stderr."""
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
