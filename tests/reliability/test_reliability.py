"""The reliability suite: the CLI run as users run it (``python -m camloc ...`` in a subprocess)
over a table of bad inputs and interruptions, for every verb.

Each case asserts the exit code, that no traceback is printed, that the output names the problem,
and what is on disk afterwards: nothing half-written (``*.tmp``), nothing changed outside the
folders the case lets the command write (its ``--out``), and whatever else the case checks (nothing
lost, nothing duplicated). Cases whose fix lives in another part are marked
``xfail(strict=True)`` with the branch that fixes them, so they flip when it lands.

docs/reliability.md is this table; ``CAMLOC_WRITE_RELIABILITY_DOC=1 pytest tests/reliability -k doc``
rewrites it, and ``test_doc_matches_table`` fails when it is stale.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "camloc" / "assets" / "samples"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
Proc = subprocess.CompletedProcess


# --------------------------------------------------------------------------------------------------
# running the CLI
# --------------------------------------------------------------------------------------------------


def cli_env(work: Path) -> dict[str, str]:
    """The environment of every CLI subprocess: one thread per library (the machine is shared),
    caches and HOME inside the case's folder, wide plain output (no colour, no wrapping)."""
    env = dict(os.environ)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CAMLOC_DEBUG"):
        env.pop(key, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", HOME=str(work / "home"), CAMLOC_CACHE=str(work / "cache"),
               XDG_CACHE_HOME=str(work / "cache"), NO_COLOR="1", TERM="dumb", COLUMNS="400",
               PYTHONUNBUFFERED="1")
    return env


def limit_memory(gib: float) -> object:
    """A ``preexec_fn`` capping the child's address space (a runaway allocation fails fast
    instead of taking the shared machine down)."""
    def apply() -> None:
        n = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (n, n))
        os.setsid()  # its own process group: a timeout kills it and its workers
    return apply


def camloc(args: list[str], work: Path, timeout: float = 180.0, memory_gib: float = 8.0,
           **popen: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m camloc ARGS`` in ``work`` and wait for it."""
    cmd = [sys.executable, "-m", "camloc", *args]
    proc = subprocess.Popen(cmd, cwd=work, env=cli_env(work), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory(memory_gib),
                            **popen)  # type: ignore[call-overload]
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"camloc {' '.join(args)} timed out after {timeout}s\n{out[-2000:]}\n"
                    f"{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _write_images(folder: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only inputs shared by every case, made once through the CLI: a synthetic WSOL dataset
    (3 classes, 48 images of 32x32); a tiny-cnn trained on it for one epoch (a camloc model
    folder, which also holds a finished training run); three small images; and an explain run
    (``-k 2``) over the first two of them, given as relative paths (cases copy it and resume)."""
    root = tmp_path_factory.mktemp("reliability-shared")
    (root / "home").mkdir()
    r = camloc(["synth", "synth", "--classes", "3", "--images", "48", "--size", "32",
                "--seed", "1"], root)
    assert r.returncode == 0, r.stderr
    r = camloc(["train", "synth", "-a", "tiny-cnn", "--arch-opt", "width=8", "--epochs", "1",
                "--batch-size", "8", "--input-size", "32", "--val-split", "none",
                "--workers", "0", "-o", "model"], root)
    assert r.returncode == 0, r.stderr
    _write_images(root / "imgs", 3)
    r = camloc(["explain", "-m", "model", "-k", "2", "-o", "explained", "imgs/img000.png",
                "imgs/img001.png"], root)
    assert r.returncode == 0, r.stderr
    return {"root": root, "synth": root / "synth", "model": root / "model", "samples": SAMPLES,
            "imgs": root / "imgs", "explained": root / "explained"}


# --------------------------------------------------------------------------------------------------
# the case folder and its inputs
# --------------------------------------------------------------------------------------------------


class Ctx:
    """One case's folder (the working directory of its commands) and the shared inputs."""

    def __init__(self, work: Path, shared: dict[str, Path]) -> None:
        self.work = work
        self.synth = shared["synth"]
        self.model = shared["model"]
        self.samples = shared["samples"]
        self.shared_root = shared["root"]
        self.shared_imgs = shared["imgs"]
        self.explained = shared["explained"]

    def p(self, rel: str) -> str:
        return str(self.work / rel)

    def data(self) -> Path:
        """A private copy of the synthetic dataset (work/data) to break."""
        d = self.work / "data"
        if not d.exists():
            shutil.copytree(self.synth, d)
        return d

    def images(self, n: int = 2, size: int = 48, folder: str = "imgs") -> Path:
        return _write_images(self.work / folder, n, size, seed=n)

    def resume_out(self) -> None:
        """work/out: a copy of the shared explain run (over the shared img000, img001); the
        bytes of every file are kept in ``self.before``."""
        shutil.copytree(self.explained, self.work / "out")
        (self.work / "out" / ".camloc.lock").unlink(missing_ok=True)
        self.before = {p: p.read_bytes() for p in (self.work / "out").rglob("*") if p.is_file()}

    def maps(self) -> Path:
        """work/maps: one 32x32 map in [0, 1] per test image of the dataset copy."""
        data = self.data()
        ids = (data / "metadata" / "test" / "image_ids.txt").read_text().split()
        rng = np.random.default_rng(0)
        for image_id in ids:
            p = self.work / "maps" / f"{image_id}.npy"
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, rng.random((32, 32)).astype(np.float32))
        return self.work / "maps"

    def model_copy(self, name: str = "mymodel") -> Path:
        d = self.work / name
        shutil.copytree(self.model, d)
        return d

    def run(self, args: list[str], **kw: Any) -> Proc[str]:
        return camloc(args, self.work, **kw)


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file, parsed strictly (no NaN, no torn lines)."""
    def bad_constant(name: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {name}")

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    assert text == "" or text.endswith("\n"), f"{path}: torn last line"
    return [json.loads(x, parse_constant=bad_constant) for x in text.splitlines()]


def _replace_line(file: Path, number: int, text: str) -> None:
    lines = file.read_text().splitlines()
    lines[number - 1] = text
    file.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    verb: str
    what: str  # the input or event, as a user would describe it
    args: Callable[[Ctx], list[str]]
    rc: int
    says: str  # a regular expression the output (stdout + stderr) must match
    expect: str = ""  # the outcome, for the doc (default: derived from rc)
    setup: Callable[[Ctx], None] | None = None
    check: Callable[[Ctx, Proc[str]], None] | None = None
    runner: Callable[[Ctx, list[str]], Proc[str]] | None = None  # default: one run
    writes: tuple[str, ...] = ("out",)  # what the case may create or change (relative)
    fix: str | None = None  # branch whose fix makes this pass (xfail until then)
    one_line: bool = False  # a usage error: exactly one line on stderr
    memory_gib: float = 8.0
    slow: bool = False
    timeout: float = 180.0  # seconds before the run is killed and the case fails

    @property
    def verdict(self) -> str:
        if self.fix:
            return f"open: fixed on branch `{self.fix}`"
        return "clear error" if self.rc == 2 else "correct outcome"


def A(*parts: str) -> Callable[[Ctx], list[str]]:
    """Fixed arguments; ``{w}`` is the case folder, ``{data}`` the shared dataset, ``{model}`` the
    tiny model, ``{samples}`` the sample photos."""
    def make(c: Ctx) -> list[str]:
        return [p.format(w=c.work, data=c.synth, model=c.model, samples=c.samples,
                         imgs=c.shared_imgs) for p in parts]
    return make


EXPLAIN = ("explain", "-m", "{model}", "-k", "2", "-o", "out")
EVAL = ("evaluate", "data", "--split", "test", "-m", "{model}", "--workers", "0", "-o", "out")
SCORE = ("score", "data", "--split", "test", "--maps", "maps", "-o", "out")
TRAIN = ("train", "data", "-a", "tiny-cnn", "--arch-opt", "width=8", "--epochs", "1",
         "--batch-size", "8", "--input-size", "32", "--workers", "0", "-o", "out")
PROBE = ("probe", "data", "--split", "train", "-m", "{model}", "--no-cache", "-C", "1",
         "--holdout", "0.5", "-o", "out")


# ---- setups and checks -----------------------------------------------------------------------


def s_images(c: Ctx) -> None:
    c.images()


def s_data(c: Ctx) -> None:
    c.data()


def s_maps(c: Ctx) -> None:
    c.maps()


def no_out(c: Ctx, r: Proc[str]) -> None:
    assert not (c.work / "out").exists(), "refused, yet --out was created"


def s_bad_files(c: Ctx) -> None:
    d = c.images(1)
    (d / "empty.jpg").write_bytes(b"")
    (d / "garbage.jpg").write_bytes(b"this is not a JPEG")
    src = (c.samples / "chelsea.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(src[: len(src) // 3])


def k_bad_files(c: Ctx, r: Proc[str]) -> None:
    recs = _lines(c.work / "out" / "results.jsonl")
    assert [Path(x["path"]).name for x in recs] == ["img000.png"]
    errs = {Path(e["path"]).name: e["error"] for e in _lines(c.work / "out" / "errors.jsonl")}
    assert set(errs) == {"empty.jpg", "garbage.jpg", "truncated.jpg"}
    assert "empty" in errs["empty.jpg"] and "truncated" in errs["truncated.jpg"]


def s_collide(c: Ctx) -> None:
    (c.work / "imgs" / "a").mkdir(parents=True)
    shutil.copy(c.samples / "chelsea.jpg", c.work / "imgs" / "a" / "x.jpg")
    shutil.copy(c.samples / "coffee.jpg", c.work / "imgs" / "a__x.jpg")


def k_distinct_outputs(n: int) -> Callable[[Ctx, Proc[str]], None]:
    def check(c: Ctx, r: Proc[str]) -> None:
        recs = _lines(c.work / "out" / "results.jsonl")
        assert len(recs) == n == len({x["path"] for x in recs})
        overlays = {(c.work / "out" / x["overlay"]).read_bytes() for x in recs}
        assert len(overlays) == n, "an overlay was overwritten by another image's"
        assert len(list((c.work / "out" / "overlays").iterdir())) == n
    return check


def s_two_folders(c: Ctx) -> None:
    """A second folder whose files have the shared run's names (img000.png, img001.png)."""
    c.resume_out()
    _write_images(c.work / "d2", 2, seed=7)


def s_long_name(c: Ctx) -> None:
    c.images(1)
    shutil.copy(c.samples / "coffee.jpg", c.work / "imgs" / ("n" * 236 + ".jpg"))  # 240 bytes
    shutil.copy(c.samples / "rocket.jpg", c.work / "imgs" / "zz_after.jpg")


def k_relative_then_absolute(c: Ctx, r: Proc[str]) -> None:
    recs = _lines(c.work / "out" / "results.jsonl")
    assert sorted(Path(x["path"]).name for x in recs) == ["img000.png", "img001.png", "img002.png"]
    assert len({x["path"] for x in recs}) == 3
    assert json.loads((c.work / "out" / "manifest.json").read_text())["counts"]["skipped"] == 2


def s_resume(c: Ctx) -> None:
    c.resume_out()


def k_unchanged(c: Ctx, r: Proc[str]) -> None:
    after = {p: p.read_bytes() for p in (c.work / "out").rglob("*") if p.is_file()
             and p.name != ".camloc.lock"}
    assert after == c.before, "a refused run changed the results"  # type: ignore[attr-defined]


def s_torn(c: Ctx) -> None:
    c.resume_out()
    with open(c.work / "out" / "results.jsonl", "ab") as fh:
        fh.write(b'{"path": "/crashed/while/writing.png", "class_ids": [1, ')


def k_three_unique(c: Ctx, r: Proc[str]) -> None:
    recs = _lines(c.work / "out" / "results.jsonl")
    assert sorted(Path(x["path"]).name for x in recs) == ["img000.png", "img001.png",
                                                          "img002.png"]


def s_link(name: str, is_dir: bool = False) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        c.images(1)
        target = c.work / "precious"
        if is_dir:
            target.mkdir()
        else:
            target.write_text("keep me\n")
        (c.work / "out").mkdir()
        (c.work / "out" / name).symlink_to(target)
    return setup


def s_out_is_file(c: Ctx) -> None:
    c.images(1)
    (c.work / "out").write_text("a file, not a folder\n")


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _popen(c: Ctx, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "camloc", *args], cwd=c.work,
                            env=cli_env(c.work), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=limit_memory(8))


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


N_BIG = 40  # images of the interruption cases


def r_kill9_resume(c: Ctx, args: list[str]) -> Proc[str]:
    c.images(N_BIG, size=96)
    results = c.work / "out" / "results.jsonl"
    proc = _popen(c, [*args, "--batch-size", "1", "imgs"])
    _wait_for(lambda: _count_lines(results) >= 2 or proc.poll() is not None, 120, "first results")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    c.killed_at = _count_lines(results)  # type: ignore[attr-defined]
    assert c.killed_at < N_BIG  # type: ignore[attr-defined]
    return c.run([*args, "--batch-size", "1", "imgs"])


def k_all_once(c: Ctx, r: Proc[str]) -> None:
    recs = _lines(c.work / "out" / "results.jsonl")
    names = sorted(Path(x["path"]).name for x in recs)
    assert names == [f"img{i:03d}.png" for i in range(N_BIG)], "records lost or duplicated"
    assert all((c.work / "out" / x["overlay"]).is_file() for x in recs)
    assert len(list((c.work / "out" / "overlays").iterdir())) == N_BIG
    counts = json.loads((c.work / "out" / "manifest.json").read_text())["counts"]
    assert counts["skipped"] >= 1 and counts["skipped"] + counts["explained"] == N_BIG


def r_sigint(c: Ctx, args: list[str]) -> Proc[str]:
    c.images(N_BIG, size=96)
    results = c.work / "out" / "results.jsonl"
    proc = _popen(c, [*args, "--batch-size", "1", "imgs"])
    _wait_for(lambda: _count_lines(results) >= 2 or proc.poll() is not None, 120, "first results")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def k_sigint(c: Ctx, r: Proc[str]) -> None:
    manifest = json.loads((c.work / "out" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    done = _lines(c.work / "out" / "results.jsonl")
    assert 1 <= len(done) < N_BIG
    assert all((c.work / "out" / x["overlay"]).is_file() for x in done)
    assert manifest["counts"]["explained"] == len(done)


def r_concurrent(c: Ctx, args: list[str]) -> Proc[str]:
    """Run A holds the lock (stopped with SIGSTOP so it cannot finish first); run B into the
    same --out must refuse; then A is resumed and must finish cleanly."""
    c.images(8)
    lock = c.work / "out" / ".camloc.lock"
    a = _popen(c, [*args, "imgs"])
    try:
        _wait_for(lambda: lock.exists() and f"pid {a.pid}" in lock.read_text(errors="replace")
                  or a.poll() is not None, 120, "run A to take the lock")
        assert a.poll() is None, "run A finished before run B started"
        os.kill(a.pid, signal.SIGSTOP)
        b = c.run(args + ["imgs"])
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert "Traceback" not in out + err
    return b


def k_concurrent(c: Ctx, r: Proc[str]) -> None:
    recs = _lines(c.work / "out" / "results.jsonl")
    assert len(recs) == 8 == len({x["path"] for x in recs}), "records duplicated"


def s_huge_photo(c: Ctx) -> None:
    (c.work / "imgs").mkdir()
    Image.new("RGB", (6000, 4000), (40, 120, 200)).save(c.work / "imgs" / "big.png")


def k_overlay_bounded(c: Ctx, r: Proc[str]) -> None:
    [rec] = _lines(c.work / "out" / "results.jsonl")
    assert (rec["width"], rec["height"]) == (6000, 4000)
    assert Image.open(c.work / "out" / rec["overlay"]).size == (2048, 1365)


def s_model_nan(c: Ctx) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    c.images(1)
    d = c.model_copy()
    w = load_file(d / "model.safetensors")
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in w.items()}, d / "model.safetensors")


def s_model_std0(c: Ctx) -> None:
    c.images(1)
    d = c.model_copy()
    spec = json.loads((d / "spec.json").read_text())
    spec["preprocess"]["std"] = [0.0, 0.0, 0.0]
    (d / "spec.json").write_text(json.dumps(spec))


def s_model_names_short(c: Ctx) -> None:
    c.images(1)
    d = c.model_copy()
    spec = json.loads((d / "spec.json").read_text())
    spec["class_names"] = spec["class_names"][:2]
    (d / "spec.json").write_text(json.dumps(spec))


def s_model_garbage(c: Ctx) -> None:
    c.images(1)
    d = c.model_copy()
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 10)


def s_empty_model_dir(c: Ctx) -> None:
    c.images(1)
    (c.work / "mymodel").mkdir()


# ---- dataset breakers (on the private copy) ----------------------------------------------------


def s_meta(file: str, number: int, text: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        _replace_line(c.data() / "metadata" / "test" / file, number, text)
    return setup


def s_meta_train(file: str, number: int, text: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        _replace_line(c.data() / "metadata" / "train" / file, number, text)
    return setup


def s_unreadable_test_image(c: Ctx) -> None:
    (c.data() / "images" / "test" / "00037.png").write_bytes(b"not a png")


def k_report_lists(name: str) -> Callable[[Ctx, Proc[str]], None]:
    def check(c: Ctx, r: Proc[str]) -> None:
        report = json.loads((c.work / "out" / "report.json").read_text())
        assert report["counts"]["failed"] == 1
        assert name in json.dumps(report["failed"])
    return check


def s_escaping_id(c: Ctx) -> None:
    data = c.data()
    shutil.copy(data / "images" / "test" / "00036.png", c.work / "outside.png")
    for file in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt",
                 "masks.txt"):
        p = data / "metadata" / "test" / file
        p.write_text(p.read_text().replace("images/test/00036.png", "../outside.png"))


def s_absolute_id(c: Ctx) -> None:
    data = c.data()
    target = str(data / "images" / "test" / "00036.png")
    for file in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt",
                 "masks.txt"):
        p = data / "metadata" / "test" / file
        p.write_text(p.read_text().replace("images/test/00036.png", target))


def s_wrong_sizes(c: Ctx) -> None:
    p = c.data() / "metadata" / "test" / "image_sizes.txt"
    p.write_text(p.read_text().replace(",32,32", ",320,320"))


def s_names_short(c: Ctx) -> None:
    (c.data() / "metadata" / "test" / "class_names.txt").write_text("red-disk\n")


def s_ilsvrc_no_synsets(c: Ctx) -> None:
    d = c.work / "data"
    (d / "images").mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for i, (photo, syn) in enumerate((("chelsea.jpg", "n02124075"), ("coffee.jpg", "n07920052"))):
        name = f"ILSVRC2012_val_{i + 1:08d}"
        shutil.copy(c.samples / photo, d / "images" / f"{name}.JPEG")
        rows.append(f"{name},{syn} 10 10 200 200")
    (d / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def s_score_map(kind: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        maps = c.maps()
        p = maps / "images" / "test" / "00036.png.npy"
        if kind == "missing":
            p.unlink()
        elif kind == "garbage":
            p.write_bytes(b"not numpy")
        elif kind == "1x1":
            np.save(p, np.full((1, 1), 0.5, np.float32))
        elif kind == "complex":
            np.save(p, (np.random.default_rng(0).random((32, 32)) * (1 + 1j)).astype(np.complex64))
        elif kind == "inf":
            a = np.random.default_rng(0).random((32, 32)).astype(np.float32)
            a[3, 3] = np.inf
            np.save(p, a)
        elif kind == "nan":
            np.save(p, np.full((32, 32), np.nan, np.float32))
    return setup


def s_not_synth(c: Ctx) -> None:
    (c.work / "out").mkdir()
    (c.work / "out" / "thesis.tex").write_text("do not delete\n")


def k_thesis(c: Ctx, r: Proc[str]) -> None:
    assert (c.work / "out" / "thesis.tex").read_text() == "do not delete\n"


def s_train_done(c: Ctx) -> None:
    """work/out: a copy of the shared finished training run (the tiny model's folder)."""
    shutil.copytree(c.model, c.work / "out")


def r_train_kill9(c: Ctx, args: list[str]) -> Proc[str]:
    c.data()
    state = c.work / "out" / "train_state.pt"
    proc = _popen(c, args)
    _wait_for(lambda: state.exists() or proc.poll() is not None, 180, "a saved train state")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    return c.run(args + ["--resume"])


def k_train_resumed(c: Ctx, r: Proc[str]) -> None:
    metrics = json.loads((c.work / "out" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["completed"] is True
    assert (c.work / "out" / "spec.json").is_file()


def k_unchanged_run(c: Ctx, r: Proc[str]) -> None:
    for p in c.model.rglob("*"):
        if p.is_file() and p.name != ".camloc.lock":  # the lock names its last holder
            assert (c.work / "out" / p.relative_to(c.model)).read_bytes() == p.read_bytes()


def s_all_val_unreadable(c: Ctx) -> None:
    for p in (c.data() / "images" / "test").iterdir():
        p.write_bytes(b"not a png")


def s_huge_id(split: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        meta = c.data() / "metadata" / split
        _replace_line(meta / "class_labels.txt", 1,
                      (meta / "image_ids.txt").read_text().split()[0] + ",99999999999")
        (meta / "class_names.txt").unlink()
    return setup


def s_one_class(c: Ctx) -> None:
    p = c.data() / "metadata" / "train" / "class_labels.txt"
    p.write_text("".join(line.rsplit(",", 1)[0] + ",0\n" for line in p.read_text().splitlines()))


def s_probe_unreadable(c: Ctx) -> None:
    (c.data() / "images" / "train" / "00001.png").write_bytes(b"not a png")


# ---- round three: output folders (H4) ---------------------------------------------------------


def s_out_link(name: str, *, data: bool = True, maps: bool = False,
               keep: str = "keep.npy") -> Callable[[Ctx], None]:
    """work/out/NAME: a symbolic link to work/precious, a folder holding a file of the user's
    (named like a file the verb writes there, so a write through the link would replace it)."""
    def setup(c: Ctx) -> None:
        if data:
            c.data()
        if maps:
            c.maps()
        target = c.work / "precious"
        target.mkdir()
        (target / keep).write_text("the user's own file\n")
        (c.work / "out").mkdir()
        (c.work / "out" / name).symlink_to(target)
    return setup


def k_precious(c: Ctx, r: Proc[str]) -> None:
    files = sorted(p.name for p in (c.work / "precious").rglob("*"))
    assert len(files) == 1, f"written through the link: {files}"


def s_weights_outside(how: str) -> Callable[[Ctx], None]:
    """A model folder whose spec.json names weights outside it (a real weights file there, so
    only the refusal keeps it from being read)."""
    def setup(c: Ctx) -> None:
        c.images(1)
        d = c.model_copy()
        elsewhere = c.work / "elsewhere.safetensors"
        (d / "model.safetensors").rename(elsewhere)
        if how == "link":
            (d / "model.safetensors").symlink_to(elsewhere)
            name = "model.safetensors"
        else:
            name = str(elsewhere) if how == "absolute" else "../elsewhere.safetensors"
        spec = json.loads((d / "spec.json").read_text())
        spec["weights_file"] = name
        (d / "spec.json").write_text(json.dumps(spec))
    return setup


def s_user_export(name: str) -> Callable[[Ctx], None]:
    """work/out/NAME/: a user's own label folder (not a camloc export)."""
    def setup(c: Ctx) -> None:
        c.images(1)
        (c.work / "out" / name / "labels").mkdir(parents=True)
        (c.work / "out" / name / "labels" / "mine.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (c.work / "out" / name / "classes.txt").write_text("my class\n")
    return setup


def k_user_export(name: str) -> Callable[[Ctx], None]:
    def check(c: Ctx, r: Proc[str]) -> None:
        d = c.work / "out" / name
        assert (d / "labels" / "mine.txt").read_text() == "0 0.5 0.5 0.2 0.2\n", "labels lost"
        assert (d / "classes.txt").read_text() == "my class\n"
        # refused before any work: no image explained, no overlay drawn
        assert not (c.work / "out" / "overlays").exists(), "explained before refusing"
        assert not (c.work / "out" / "results.jsonl").exists(), "explained before refusing"
    return check


def s_user_tmp(c: Ctx) -> None:
    c.images(1)
    (c.work / "out").mkdir()
    (c.work / "out" / ".draft.tmp").write_text("a user's notes\n")
    (c.work / "out" / ".x.12345678.tmp").write_text("looks like an old temporary name\n")


def k_user_tmp(c: Ctx, r: Proc[str]) -> None:
    assert (c.work / "out" / ".draft.tmp").read_text() == "a user's notes\n"
    assert (c.work / "out" / ".x.12345678.tmp").is_file()
    assert len(_lines(c.work / "out" / "results.jsonl")) == 1


def r_train_twice(c: Ctx, args: list[str]) -> Proc[str]:
    """Run A trains into out (stopped with SIGSTOP once it holds the lock); run B into the same
    out must be refused; then A is resumed and must finish."""
    c.data()
    lock = c.work / "out" / ".camloc.lock"
    a = _popen(c, [*args[:6], "--epochs", "3", *args[8:], "--val-split", "none"])
    try:
        _wait_for(lambda: lock.exists() and f"pid {a.pid}" in lock.read_text(errors="replace")
                  or a.poll() is not None, 120, "run A to take the lock")
        assert a.poll() is None, "run A finished before run B started"
        os.kill(a.pid, signal.SIGSTOP)
        b = c.run([*args, "--val-split", "none", "--overwrite"])
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=180)
    assert a.returncode == 0, err
    assert "Traceback" not in out + err
    return b


def k_train_a_kept(c: Ctx, r: Proc[str]) -> None:
    m = json.loads((c.work / "out" / "metrics.json").read_text())
    assert len(m["history"]) == 3, "run A's files were replaced by run B's"


def s_odd_names(c: Ctx) -> None:
    """An image whose file name is not UTF-8 (byte 0xff), and a model whose class names hold a
    lone surrogate, U+FFFE and U+FFFF (and a control character)."""
    d = c.work / "imgs"
    d.mkdir()
    shutil.copy(c.shared_imgs / "img000.png", os.fsdecode(bytes(d) + b"/caf\xe9-\xff.png"))
    m = c.model_copy()
    spec = json.loads((m / "spec.json").read_text())
    spec["class_names"] = ["a\ud800b", "c\ufffed\uffff", "e\x01f"]
    (m / "spec.json").write_text(json.dumps(spec))


def k_odd_names(c: Ctx, r: Proc[str]) -> None:
    import xml.etree.ElementTree as ET

    out = c.work / "out"
    coco = json.loads((out / "coco" / "instances.json").read_bytes().decode("utf-8"))
    assert len(coco["images"]) == 1 and len(coco["categories"]) == 3
    assert coco["images"][0]["file_name"].endswith("caf\ufffd-\ufffd.png")
    json.loads((out / "coco" / "detections.json").read_bytes().decode("utf-8"))
    names = (out / "yolo" / "classes.txt").read_bytes().decode("utf-8").splitlines()
    assert names == ["a\ufffdb", "c\ufffed\uffff", "e\x01f"]
    [xml] = list((out / "voc").glob("*.xml"))
    root = ET.fromstring(xml.read_bytes())  # well-formed XML 1.0, or this raises
    got = sorted(o.findtext("name") for o in root.iter("object"))
    assert got and set(got) <= {"a\ufffdb", "cd", "ef"}, got
    assert root.findtext("filename") == "caf\ufffd-\ufffd.png"


def s_probe_odd_class(c: Ctx) -> None:
    """A folder dataset (a class folder per class) whose second class folder's name is not
    UTF-8."""
    for name in (b"plain", b"caf\xe9"):
        d = Path(os.fsdecode(bytes(c.work / "data") + b"/" + name))
        _write_images(d, 6, size=32, seed=len(name))


def k_probe_odd_class(c: Ctx, r: Proc[str]) -> None:
    out = c.work / "out"
    assert (out / "confusion.png").is_file() and (out / "head.json").is_file()
    assert "caf\ufffd" in (out / "report.md").read_text(encoding="utf-8")


def limit_file_size(nbytes: int) -> object:
    """A ``preexec_fn``: writes past ``nbytes`` fail with EFBIG (Python ignores SIGXFSZ), as on a
    full disk."""
    def apply() -> None:
        limit_memory(8)()
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def r_small_disk(c: Ctx, args: list[str]) -> Proc[str]:
    cmd = [sys.executable, "-m", "camloc", *args]
    proc = subprocess.run(cmd, cwd=c.work, env=cli_env(c.work), capture_output=True, text=True,
                          timeout=180, preexec_fn=limit_file_size(100_000))
    return proc


def k_no_half_maps(c: Ctx, r: Proc[str]) -> None:
    maps = c.work / "out" / "scoremaps"
    for p in maps.rglob("*.npy") if maps.exists() else []:
        assert np.load(p).shape == (224, 224), f"{p} is half-written"
    assert "requested and" not in r.stderr


# ---- round three: bounds and validation (H5) ------------------------------------------------


def s_thin_png(c: Ctx) -> None:
    """A good image, a 1 x 60000 PNG (a few hundred bytes) and a 4000 x 40 panorama (kept)."""
    c.images(1)
    Image.new("RGB", (1, 60000), (200, 30, 30)).save(c.work / "imgs" / "thin.png")
    Image.new("RGB", (4000, 40), (30, 200, 30)).save(c.work / "imgs" / "wide.png")


def k_thin_refused(c: Ctx, r: Proc[str]) -> None:
    assert (c.work / "imgs" / "thin.png").stat().st_size < 1000
    recs = _lines(c.work / "out" / "results.jsonl")
    assert sorted(Path(x["path"]).name for x in recs) == ["img000.png", "wide.png"]
    errs = {Path(e["path"]).name: e["error"] for e in _lines(c.work / "out" / "errors.jsonl")}
    assert set(errs) == {"thin.png"} and "over the limit" in errs["thin.png"], errs


def s_xml_bomb(c: Ctx) -> None:
    """An ILSVRC XML dataset (two photos) whose second box file is an 800-byte entity bomb."""
    d = c.work / "data"
    (d / "val").mkdir(parents=True)
    (d / "bbox").mkdir()
    syns = ("n02124075", "n07920052")
    for i, (photo, syn) in enumerate(zip(("chelsea.jpg", "coffee.jpg"), syns)):
        stem = f"ILSVRC2012_val_{i + 1:08d}"
        shutil.copy(c.samples / photo, d / "val" / f"{stem}.JPEG")
        (d / "bbox" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename><object><name>{syn}</name><bndbox>"
            f"<xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>"
            f"</annotation>\n")
    (d / "LOC_synset_mapping.txt").write_text("".join(f"{s} {s}\n" for s in syns))
    ents = ['<!ENTITY a0 "lol">'] + [f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">'
                                     for i in range(1, 10)]
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE annotation [' + "".join(ents) + "]>\n"
            "<annotation><filename>&a9;</filename></annotation>\n")
    assert len(bomb) < 1000
    (d / "bbox" / "ILSVRC2012_val_00000002.xml").write_text(bomb)
    (c.work / "maps").mkdir()


def s_spec(edit: Callable[[dict[str, Any]], None]) -> Callable[[Ctx], None]:
    """A copy of the tiny model whose spec.json is edited."""
    def setup(c: Ctx) -> None:
        c.images(1)
        d = c.model_copy()
        spec = json.loads((d / "spec.json").read_text())
        edit(spec)
        (d / "spec.json").write_text(json.dumps(spec))
    return setup


WNIDS = (("chelsea.jpg", "n02124075", 285), ("coffee.jpg", "n07920052", 967))  # ImageNet ids


def s_wnid_csv(c: Ctx) -> None:
    """An ImageNet subset in camloc's CSV layout, its labels WordNet ids."""
    d = c.work / "data"
    d.mkdir()
    rows = ["path,label,x0,y0,x1,y1"]
    for photo, wnid, _ in WNIDS:
        shutil.copy(c.samples / photo, d / photo)
        rows.append(f"{photo},{wnid},40,20,400,280")
    (d / "annotations.csv").write_text("\n".join(rows) + "\n")


def s_wnid_cub(c: Ctx) -> None:
    """The same photos in the CUB layout, classes named CUB-style (``0001.n02124075``)."""
    d = c.work / "data"
    lines: dict[str, list[str]] = {k: [] for k in ("classes", "images", "image_class_labels",
                                                   "bounding_boxes", "train_test_split")}
    for i, (photo, wnid, _) in enumerate(WNIDS, 1):
        folder = f"{i:04d}.{wnid}"
        (d / "images" / folder).mkdir(parents=True)
        shutil.copy(c.samples / photo, d / "images" / folder / photo)
        lines["classes"].append(f"{i} {folder}")
        lines["images"].append(f"{i} {folder}/{photo}")
        lines["image_class_labels"].append(f"{i} {i}")
        lines["bounding_boxes"].append(f"{i} 40 20 300 260")
        lines["train_test_split"].append(f"{i} 0")
    for name, rows in lines.items():
        (d / f"{name}.txt").write_text("\n".join(rows) + "\n")


def k_wnid_labels(c: Ctx, r: Proc[str]) -> None:
    """Scored against the model's classes: Egyptian cat (285) and espresso (967)."""
    recs = _lines(c.work / "out" / "per_image.jsonl")
    got = {Path(x["image_id"]).name: x["label"] for x in recs}
    assert got == {photo: label for photo, _, label in WNIDS}, got
    assert all(x["top1_correct"] for x in recs)


def s_box_no_sizes(c: Ctx) -> None:
    """No image_sizes.txt; the first box of localization.txt 0,0,5000,5000 on a 32 x 32 image."""
    meta = c.data() / "metadata" / "test"
    (meta / "image_sizes.txt").unlink()
    _replace_line(meta / "localization.txt", 1, "images/test/00036.png,0,0,5000,5000")
    c.maps()


def _coco(**changes: Any) -> str:
    """A COCO instances file for the dataset copy's first test image, with ``changes`` applied:
    ``key=value`` at the top, ``images__0__key`` / ``annotations__0__key`` /
    ``categories__0__key`` inside the first record."""
    doc: dict[str, Any] = {
        "images": [{"id": 1, "file_name": "images/test/00036.png", "width": 32, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20],
                         "score": 0.9}],
        "categories": [{"id": 1, "name": "red-disk", "camloc_class_id": 0}]}
    for key, value in changes.items():
        parts = key.split("__")
        if len(parts) == 1:
            doc[key] = value
        else:
            doc[parts[0]][int(parts[1])][parts[2]] = value
    return json.dumps(doc)


def s_box_file(text: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        c.data()
        (c.work / "boxes.json").write_text(text)
    return setup


SCORE_BOXES = ("score", "data", "--split", "test", "--boxes", "boxes.json", "-o", "out")
_RESULT = {"path": "data/images/test/00036.png", "class_ids": [0], "probs": [0.9],
           "boxes": [[2, 2, 20, 20]]}


CASES: list[Case] = [
    # ---- usage errors (every verb; no model, no torch) -----------------------------------------
    Case("no-args", "cli", "no arguments at all", A(), 2, r"no command given", one_line=True),
    Case("unknown-verb", "cli", "an unknown verb", A("bogus"), 2, r"No such command 'bogus'",
         one_line=True),
    Case("unknown-global-opt", "cli", "an unknown option before the verb", A("--bogus"), 2,
         r"No such option.*--bogus", one_line=True),
    Case("explain-unknown-opt", "explain", "an unknown option", A("explain", "x.jpg", "--bogus"),
         2, r"No such option.*--bogus", one_line=True),
    Case("explain-k-abc", "explain", "`-k abc`", A("explain", "x.jpg", "-k", "abc"), 2,
         r"--top-k", one_line=True),
    Case("explain-k-0", "explain", "`-k 0`", A("explain", "x.jpg", "-k", "0"), 2, r"--top-k",
         one_line=True),
    Case("explain-batch-neg", "explain", "`--batch-size -1`",
         A("explain", "x.jpg", "--batch-size", "-1"), 2, r"--batch-size", one_line=True),
    Case("explain-no-paths", "explain", "no image paths", A("explain"), 2,
         r"Missing argument 'PATHS", one_line=True),
    Case("explain-opt-no-value", "explain", "an option without its value",
         A("explain", "x.jpg", "--top-k"), 2, r"--top-k.*requires an argument", one_line=True),
    Case("evaluate-no-dataset", "evaluate", "no dataset", A("evaluate"), 2,
         r"Missing argument 'DATASET'", one_line=True),
    Case("score-no-maps", "score", "no `--maps`", A("score", "data"), 2,
         r"Missing option '--maps'", one_line=True),
    Case("train-no-arch", "train", "no `--arch`", A("train", "data"), 2,
         r"Missing option '--arch'", one_line=True),
    Case("train-epochs-x", "train", "`--epochs x`", A("train", "data", "-a", "tiny-cnn",
                                                      "--epochs", "x"), 2, r"--epochs",
         one_line=True),
    Case("probe-holdout-abc", "probe", "`--holdout abc`", A("probe", "data", "--holdout", "abc"),
         2, r"--holdout", one_line=True),
    Case("synth-classes-many", "synth", "`--classes many`",
         A("synth", "out", "--classes", "many"), 2, r"--classes", one_line=True),

    # ---- explain: bad values (all refused before anything is written) --------------------------
    Case("explain-threshold-nan", "explain", "`--threshold nan`",
         A(*EXPLAIN, "imgs", "--threshold", "nan"), 2, r"threshold=nan", setup=s_images,
         check=no_out, one_line=True),
    Case("explain-threshold-1.5", "explain", "`--threshold 1.5`",
         A(*EXPLAIN, "imgs", "--threshold", "1.5"), 2, r"threshold=1.5.*\[0, 1\]",
         setup=s_images, check=no_out, one_line=True),
    Case("explain-method", "explain", "`--method bogus`", A(*EXPLAIN, "imgs", "--method", "bogus"),
         2, r"--method 'bogus'.*cam, gradcam", setup=s_images, check=no_out, one_line=True),
    Case("explain-fit", "explain", "`--fit squash`", A(*EXPLAIN, "imgs", "--fit", "squash"), 2,
         r"fit='squash'", setup=s_images, check=no_out, one_line=True),
    Case("explain-k-5000", "explain", "`-k 5000` (more than the model's classes)",
         A("explain", "-m", "{model}", "-o", "out", "imgs", "-k", "5000"), 2,
         r"--top-k 5000.*only 3 classes", setup=s_images, check=no_out, one_line=True),
    Case("explain-classes-unknown", "explain", "`--classes` with an unknown name",
         A(*EXPLAIN, "imgs", "--classes", "unicorn"), 2, r"unknown class 'unicorn'",
         setup=s_images, check=no_out, one_line=True),
    Case("explain-classes-range", "explain", "`--classes 99` (no such id)",
         A(*EXPLAIN, "imgs", "--classes", "99"), 2, r"id 99 is out of range", setup=s_images,
         check=no_out, one_line=True),
    Case("explain-classes-crane", "explain",
         "`--classes crane` with ImageNet (two classes share the name)",
         A("explain", "imgs", "--classes", "crane", "-o", "out"), 2,
         r"'crane' names 2 classes: 134 \(crane\), 517 \(crane\)", setup=s_images, check=no_out,
         one_line=True),
    Case("explain-model-missing", "explain", "`-m` names no model or folder",
         A("explain", "imgs", "-m", "no-such-model", "-o", "out"), 2, r"no-such-model",
         setup=s_images, check=no_out),
    Case("explain-model-empty-dir", "explain", "`-m` an empty folder",
         A("explain", "imgs", "-m", "mymodel", "-o", "out"), 2, r"spec\.json",
         setup=s_empty_model_dir, check=no_out),
    Case("explain-model-garbage", "explain", "a model folder whose weights file is garbage",
         A("explain", "imgs", "-m", "mymodel", "-o", "out"), 2, r"model\.safetensors",
         setup=s_model_garbage, check=no_out),
    Case("explain-weights-missing", "explain", "`--weights` names a missing file",
         A(*EXPLAIN, "imgs", "--weights", "nope.safetensors"), 2, r"nope\.safetensors",
         setup=s_images, check=no_out),
    Case("explain-head-missing", "explain", "`--head` names a missing folder",
         A(*EXPLAIN, "imgs", "--head", "nohead"), 2, r"nohead", setup=s_images, check=no_out),
    Case("explain-device-tpu", "explain", "`--device tpu` (torch's raw list of device types)",
         A(*EXPLAIN, "imgs", "--device", "tpu"), 2, r"\A(?!.*mkldnn).*device\W+tpu",
         setup=s_images, check=no_out, one_line=True),
    Case("explain-nan-weights", "explain", "a model folder with NaN weights",
         A("explain", "imgs", "-m", "mymodel", "-k", "2", "-o", "out"), 2, r"NaN|non-finite",
         setup=s_model_nan, check=no_out),
    Case("explain-std-0", "explain", "a model spec with `std` 0",
         A("explain", "imgs", "-m", "mymodel", "-k", "2", "-o", "out"), 2, r"std",
         setup=s_model_std0, check=no_out),
    Case("explain-model-names", "explain", "a model spec whose class_names are too few",
         A("explain", "imgs", "-m", "mymodel", "-k", "2", "-o", "out"), 2, r"class_names",
         setup=s_model_names_short, check=no_out),

    # ---- explain: bad inputs never stop the batch ----------------------------------------------
    Case("explain-missing-file", "explain", "an input file that does not exist",
         A(*EXPLAIN, "nope.jpg"), 1, r"nope\.jpg: no such file or folder",
         check=lambda c, r: _lines(c.work / "out" / "errors.jsonl")[0]["path"] == "nope.jpg"),
    Case("explain-empty-folder", "explain", "a folder without images", A(*EXPLAIN, "empty"), 1,
         r"folder contains no images", setup=lambda c: (c.work / "empty").mkdir()),
    Case("explain-bad-files", "explain", "empty, garbage and truncated files among good ones",
         A(*EXPLAIN, "imgs"), 1, r"3 failed", setup=s_bad_files, check=k_bad_files),
    Case("explain-name-collision", "explain", "`a/x.jpg` and `a__x.jpg` in one run",
         A(*EXPLAIN, "imgs"), 0, r"2 explained", setup=s_collide, check=k_distinct_outputs(2)),
    Case("explain-two-folders", "explain", "two runs over different folders (same file names) "
         "into one `--out`", A(*EXPLAIN, "d2"), 0, r"2 explained", setup=s_two_folders,
         check=k_distinct_outputs(4)),
    Case("explain-long-name", "explain", "a legal 240-byte file name", A(*EXPLAIN, "imgs"), 0,
         r"3 explained", setup=s_long_name, check=k_distinct_outputs(3)),
    Case("explain-relative-absolute", "explain", "a resume naming the same files relatively, "
         "then absolutely", A(*EXPLAIN, "{imgs}"), 0, r"1 explained, 2 skipped",
         setup=s_resume, check=k_relative_then_absolute),
    Case("explain-resume-other-k", "explain", "a resume with a different `-k`",
         A("explain", "-m", "{model}", "-k", "3", "-o", "out", "{imgs}"), 2,
         r"other settings \(top_k 2 -> 3\).*--overwrite", setup=s_resume, check=k_unchanged,
         one_line=True),
    Case("explain-resume-other-model", "explain", "a resume with a different `--model`",
         A("explain", "-m", "mymodel", "-k", "2", "-o", "out", "{imgs}"), 2,
         r"other settings \(model .*mymodel.*--overwrite",
         setup=lambda c: (c.resume_out(), c.model_copy()), check=k_unchanged, one_line=True),
    Case("explain-overwrite-bad-option", "explain", "`--overwrite` with an invalid option",
         A(*EXPLAIN, "{imgs}", "--overwrite", "--method", "bogus"), 2, r"--method 'bogus'",
         setup=s_resume, check=k_unchanged, one_line=True),
    Case("explain-torn-line", "explain", "results.jsonl with a torn last line (crash mid-write)",
         A(*EXPLAIN, "{imgs}"), 0, r"1 explained, 2 skipped", setup=s_torn,
         check=k_three_unique),
    Case("explain-errors-symlink", "explain", "errors.jsonl is a symbolic link to another file",
         A(*EXPLAIN, "imgs"), 2, r"errors\.jsonl is a symbolic link", setup=s_link("errors.jsonl"),
         check=lambda c, r: (c.work / "precious").read_text() == "keep me\n", one_line=True),
    Case("explain-results-symlink", "explain", "results.jsonl is a symbolic link",
         A(*EXPLAIN, "imgs"), 2, r"results\.jsonl is a symbolic link",
         setup=s_link("results.jsonl"), one_line=True),
    Case("explain-overlays-symlink", "explain", "overlays/ is a symbolic link to another folder",
         A(*EXPLAIN, "imgs"), 2, r"overlays is a symbolic link",
         setup=s_link("overlays", is_dir=True),
         check=lambda c, r: not any((c.work / "precious").iterdir()), one_line=True),
    Case("explain-out-is-file", "explain", "`--out` is a file", A(*EXPLAIN, "imgs"), 2,
         r"--out out: exists and is not a folder", setup=s_out_is_file, one_line=True),
    Case("explain-out-under-file", "explain", "`--out` inside a file",
         A(*EXPLAIN[:-2], "-o", "afile/out", "imgs"), 2,
         r"--out afile/out: cannot create", setup=lambda c: (c.images(1),
                                                             (c.work / "afile").write_text("x")),
         one_line=True),
    Case("explain-out-unwritable", "explain", "`--out` where nobody may write (/sys)",
         A(*EXPLAIN[:-2], "-o", "/sys/camloc-reliability", "imgs"), 2,
         r"--out /sys/camloc-reliability: cannot create", setup=s_images, one_line=True),
    Case("explain-kill9-resume", "explain", "`kill -9` mid-run, then the same command again",
         A(*EXPLAIN), 0, r"skipped", runner=r_kill9_resume, check=k_all_once, slow=True),
    Case("explain-ctrl-c", "explain", "Ctrl-C (SIGINT) mid-run, then the same command again",
         A(*EXPLAIN), 130, r"interrupted", runner=r_sigint, check=k_sigint, slow=True),
    Case("explain-concurrent", "explain", "a second run into an `--out` a run is writing",
         A(*EXPLAIN), 2, r"--out out is in use by another camloc run \(pid \d+", runner=r_concurrent,
         check=k_concurrent, one_line=True, slow=True),
    Case("explain-huge-photo", "explain", "a 6000 x 4000 photo",
         A(*EXPLAIN, "-k", "1", "imgs"), 0,
         r"1 explained", setup=s_huge_photo, check=k_overlay_bounded),

    # ---- evaluate -------------------------------------------------------------------------------
    Case("evaluate-no-such-dataset", "evaluate", "a dataset folder that does not exist",
         A(*EVAL), 2, r"dataset not found: data", check=no_out),
    Case("evaluate-bad-label", "evaluate", "class_labels.txt with a non-numeric label",
         A(*EVAL), 2, r"class_labels\.txt:1", setup=s_meta("class_labels.txt", 1,
                                                            "images/test/00036.png,abc"),
         check=no_out),
    Case("evaluate-bad-box", "evaluate", "localization.txt with a box of negative width",
         A(*EVAL), 2, r"localization\.txt:1",
         setup=s_meta("localization.txt", 1, "images/test/00036.png,25,8,10,28"), check=no_out),
    Case("evaluate-unreadable-image", "evaluate", "an unreadable image in the dataset",
         A(*EVAL), 1, r"00037\.png", setup=s_unreadable_test_image,
         check=k_report_lists("00037.png")),
    Case("evaluate-huge-class-id", "evaluate", "class id 99999999999 in class_labels.txt",
         A(*EVAL), 2, r"99999999999", setup=s_huge_id("test"), check=no_out, memory_gib=4),
    Case("evaluate-escaping-id", "evaluate", "an image id `../outside.png` (with `--save-maps`)",
         A(*EVAL, "--save-maps"), 2, r"\.\./outside\.png", setup=s_escaping_id),
    Case("evaluate-absolute-id", "evaluate", "an absolute image id", A(*EVAL), 2,
         r"absolute", setup=s_absolute_id),
    Case("evaluate-wrong-sizes", "evaluate", "image_sizes.txt disagrees with the images",
         A(*EVAL), 2, r"image_sizes\.txt", setup=s_wrong_sizes),
    Case("evaluate-names-short", "evaluate", "class_names.txt with fewer names than classes",
         A(*EVAL), 2, r"class_names\.txt", setup=s_names_short),
    Case("evaluate-ilsvrc-no-synsets", "evaluate",
         "ILSVRC CSV without LOC_synset_mapping.txt (class ids would be guessed)",
         A("evaluate", "data/LOC_val_solution.csv", "-m", "{model}", "--workers", "0", "-o",
           "out"), 2,
         r"synset", setup=s_ilsvrc_no_synsets),
    Case("evaluate-workers-neg", "evaluate", "`--workers -1`", A(*EVAL, "--workers", "-1"), 2,
         r"--workers", setup=s_data, check=no_out),
    Case("evaluate-threshold-nan", "evaluate", "`--fixed-threshold nan`",
         A(*EVAL, "--fixed-threshold", "nan"), 2, r"threshold", setup=s_data, check=no_out),
    Case("evaluate-calibrate-nan", "evaluate", "`--calibrate nan`", A(*EVAL, "--calibrate", "nan"),
         2, r"--calibrate", setup=s_data, check=no_out),

    # ---- score ----------------------------------------------------------------------------------
    Case("score-no-maps-folder", "score", "`--maps` folder does not exist", A(*SCORE), 2,
         r"maps", setup=s_data, check=no_out),
    Case("score-missing-map", "score", "one map missing", A(*SCORE), 1, r"00036\.png",
         setup=s_score_map("missing"), check=k_report_lists("00036.png")),
    Case("score-garbage-map", "score", "one .npy file is garbage", A(*SCORE), 1, r"00036\.png",
         setup=s_score_map("garbage"), check=k_report_lists("00036.png")),
    Case("score-nan-map", "score", "one map is all NaN", A(*SCORE), 1, r"00036\.png",
         setup=s_score_map("nan"), check=k_report_lists("00036.png")),
    Case("score-1x1-map", "score", "a 1 x 1 map", A(*SCORE), 0, r"MaxBoxAcc",
         setup=s_score_map("1x1")),
    Case("score-complex-map", "score", "a complex-valued map", A(*SCORE), 1, r"complex",
         setup=s_score_map("complex")),
    Case("score-inf-normalize", "score", "a map with an inf value, `--normalize`",
         A(*SCORE, "--normalize"), 1, r"00036\.png", setup=s_score_map("inf")),
    Case("score-threshold-nan", "score", "`--fixed-threshold nan`",
         A(*SCORE, "--fixed-threshold", "nan"), 2, r"threshold", setup=s_maps, check=no_out),
    Case("score-workers-neg", "score", "`--workers -1`", A(*SCORE, "--workers", "-1"), 2,
         r"--workers.*-1", setup=s_maps, check=no_out, one_line=True),

    # ---- synth ----------------------------------------------------------------------------------
    Case("synth-classes-1", "synth", "`--classes 1`", A("synth", "out", "--classes", "1"), 2,
         r"classes", check=no_out, one_line=True),
    Case("synth-classes-100", "synth", "`--classes 100`", A("synth", "out", "--classes", "100"),
         2, r"classes must be <= 42", check=no_out, one_line=True),
    Case("synth-size-8", "synth", "`--size 8`", A("synth", "out", "--size", "8"), 2, r"size",
         check=no_out, one_line=True),
    Case("synth-images-0", "synth", "`--images 0`", A("synth", "out", "--images", "0"), 2,
         r"images", check=no_out, one_line=True),
    Case("synth-test-fraction", "synth", "`--test-fraction 1.5`",
         A("synth", "out", "--test-fraction", "1.5"), 2, r"test_fraction", check=no_out,
         one_line=True),
    Case("synth-into-other-folder", "synth", "`OUT` is a folder holding other files",
         A("synth", "out", "--images", "8", "--size", "32"), 2, r"out", setup=s_not_synth,
         check=k_thesis),

    # ---- train ----------------------------------------------------------------------------------
    Case("train-no-dataset", "train", "a dataset that does not exist", A(*TRAIN), 2,
         r"dataset not found", check=no_out),
    Case("train-arch-bogus", "train", "`--arch bogus`",
         A("train", "data", "-a", "bogus", "-o", "out"), 2, r"bogus", setup=s_data, check=no_out),
    Case("train-workers-neg", "train", "`--workers -1`", A(*TRAIN, "--workers", "-1"), 2,
         r"workers=-1", setup=s_data, check=no_out, one_line=True),
    Case("train-lr-nan", "train", "`--lr nan`", A(*TRAIN, "--lr", "nan"), 2, r"lr=nan",
         setup=s_data, check=no_out, one_line=True),
    Case("train-arch-opt", "train", "`--arch-opt width` (no value)",
         A(*TRAIN, "--arch-opt", "width"), 2, r"--arch-opt 'width'", setup=s_data,
         check=no_out, one_line=True),
    Case("train-crop-scale", "train", "`--crop-scale abc`", A(*TRAIN, "--crop-scale", "abc"), 2,
         r"--crop-scale 'abc'", setup=s_data, check=no_out, one_line=True),
    Case("train-out-holds-run", "train", "`--out` already holds a run", A(*TRAIN), 2,
         r"already holds a training run.*--resume.*--overwrite",
         setup=lambda c: (c.data(), s_train_done(c)), check=k_unchanged_run, one_line=True),
    Case("train-resume-changed", "train", "`--resume` with a different `--lr`",
         A(*TRAIN, "--val-split", "none", "--resume", "--lr", "0.5"), 2,
         r"cannot resume with different settings.*lr: saved 0\.01, now 0\.5",
         setup=lambda c: (c.data(), s_train_done(c)), check=k_unchanged_run, one_line=True),
    Case("train-kill9-resume", "train", "`kill -9` mid-training, then `--resume`",
         A(*TRAIN[:6], "--epochs", "3", *TRAIN[8:], "--val-split", "none", "--save-every", "2"),
         0, r"finished after 3 epoch", runner=r_train_kill9, check=k_train_resumed, slow=True),
    Case("train-val-unreadable", "train", "every validation image unreadable", A(*TRAIN), 1,
         r"no best model.*12 validation image\(s\) could not be read",
         setup=s_all_val_unreadable),
    Case("train-one-class", "train", "a training set with a single class",
         A(*TRAIN, "--val-split", "none"), 2, r"class", setup=s_one_class, check=no_out),
    Case("train-huge-class-id", "train", "class id 99999999999 in the training labels",
         A(*TRAIN, "--val-split", "none"), 2, r"99999999999", setup=s_huge_id("train"),
         check=no_out, memory_gib=4),

    # ---- probe ----------------------------------------------------------------------------------
    Case("probe-no-dataset", "probe", "a dataset that does not exist", A(*PROBE), 2,
         r"dataset not found", check=no_out),
    Case("probe-C-abc", "probe", "`-C abc`", A(*PROBE, "-C", "abc"), 2, r"abc", setup=s_data,
         check=no_out, one_line=True),
    Case("probe-classifier", "probe", "`--classifier bogus`", A(*PROBE, "--classifier", "bogus"),
         2, r"--classifier 'bogus'", setup=s_data, check=no_out, one_line=True),
    Case("probe-holdout-1.5", "probe", "`--holdout 1.5`", A(*PROBE, "--holdout", "1.5"), 2,
         r"--holdout 1\.5", setup=s_data, check=no_out, one_line=True),
    Case("probe-unreadable", "probe", "an unreadable training image", A(*PROBE), 1,
         r"00001\.png", setup=s_probe_unreadable,
         check=lambda c, r: "00001.png" in (c.work / "out" / "errors.jsonl").read_text()),
    Case("probe-huge-class-id", "probe", "class id 99999999999 in the labels", A(*PROBE), 2,
         r"99999999999", setup=s_huge_id("train"), check=no_out, memory_gib=4),
    # --- round three: output folders (H4) ---
    Case("evaluate-scoremaps-symlink", "evaluate",
         "`--save-maps` with out/scoremaps a symbolic link to a folder elsewhere",
         A(*EVAL, "--save-maps"), 2, r"scoremaps is a symbolic link",
         setup=s_out_link("scoremaps", keep="00036.npy"), check=k_precious, one_line=True),
    Case("compare-gallery-symlink", "compare",
         "out/gallery a symbolic link to a folder elsewhere",
         A("compare", "data", "--split", "test", "--model", "{model}", "--methods", "cam",
           "--no-faithfulness", "--device", "cpu", "-o", "out"), 2,
         r"gallery is a symbolic link", setup=s_out_link("gallery", keep="00_cam.png"),
         check=k_precious, one_line=True),
    Case("units-sheets-symlink", "units", "out/sheets a symbolic link to a folder elsewhere",
         A("units", "data", "--split", "test", "--model", "{model}", "--top-images", "4",
           "--top-units", "3", "--workers", "0", "--device", "cpu", "-o", "out"), 2,
         r"sheets is a symbolic link", setup=s_out_link("sheets", keep="class_000.png"),
         check=k_precious, one_line=True),
    Case("train-last-symlink", "train",
         "out/last a symbolic link to the user's model folder", A(*TRAIN, "--val-split", "none"),
         2, r"last is a symbolic link", setup=s_out_link("last", keep="model.safetensors"),
         check=k_precious, one_line=True),
    Case("train-two-runs", "train", "a second `train` into the `--out` of one still running",
         A(*TRAIN), 2, r"--out out is in use by another camloc run \(pid \d+",
         runner=r_train_twice, check=k_train_a_kept, slow=True),
    Case("model-weights-file-relative", "explain",
         "spec.json `weights_file` `../elsewhere.safetensors` (outside the model folder)",
         A("explain", "-m", "mymodel", "-o", "out", "imgs"), 2, r"outside the model folder",
         setup=s_weights_outside("relative"), check=no_out),
    Case("model-weights-file-absolute", "explain",
         "spec.json `weights_file` an absolute path elsewhere",
         A("explain", "-m", "mymodel", "-o", "out", "imgs"), 2, r"outside the model folder",
         setup=s_weights_outside("absolute"), check=no_out),
    Case("model-weights-file-link", "explain",
         "the model folder's model.safetensors a link to a file elsewhere",
         A("explain", "-m", "mymodel", "-o", "out", "imgs"), 2, r"outside the model folder",
         setup=s_weights_outside("link"), check=no_out),
    Case("explain-user-yolo-folder", "explain",
         "`--format yolo` with out/yolo/ a user's own label folder",
         A(*EXPLAIN, "--format", "yolo", "imgs"), 2, r"yolo exists and was not written by camloc",
         setup=s_user_export("yolo"), check=k_user_export("yolo")),
    Case("explain-user-voc-folder", "explain",
         "`--format voc` with out/voc/ a user's own folder",
         A(*EXPLAIN, "--format", "voc", "imgs"), 2, r"voc exists and was not written by camloc",
         setup=s_user_export("voc"), check=k_user_export("voc")),
    Case("explain-user-tmp-files", "explain", "a user's own `.*.tmp` files in `--out`",
         A(*EXPLAIN, "imgs"), 0, r"explained", setup=s_user_tmp, check=k_user_tmp),
    Case("explain-export-odd-names", "explain",
         "`--format coco,yolo,voc`: a file name that is not UTF-8, class names with a lone "
         "surrogate, U+FFFE and U+FFFF",
         A("explain", "-m", "mymodel", "-k", "3", "--format", "coco,yolo,voc", "-o", "out",
           "imgs"), 0, r"explained", setup=s_odd_names, check=k_odd_names),
    Case("probe-odd-class-name", "probe", "a class folder whose name is not UTF-8",
         A("probe", "data", "-m", "{model}", "--no-cache", "-C", "1", "--holdout", "0.5", "-o",
           "out"), 0, r"held-out accuracy", setup=s_probe_odd_class, check=k_probe_odd_class),
    Case("evaluate-save-maps-full-disk", "evaluate",
         "`--save-maps` when writes fail for room (file-size limit: EFBIG, as a full disk)",
         A(*EVAL, "--save-maps"), 2, r"scoremaps.*(too large|full)", setup=s_data,
         runner=r_small_disk, check=k_no_half_maps, one_line=True),
    # --- round three: bounds and validation (H5) ---
    Case("explain-crop-thin-png", "explain",
         "a 1 x 60000 PNG (321 bytes) with `--fit crop`; a 4000 x 40 panorama beside it",
         A(*EXPLAIN, "--fit", "crop", "imgs"), 1, r"thin\.png.*over the limit.*--fit stretch",
         setup=s_thin_png, check=k_thin_refused, memory_gib=4),
    Case("units-tile-huge", "units", "`--tile 100000` (each sheet tile 100000 px square)",
         A("units", "data", "-o", "out", "--tile", "100000"), 2, r"--tile=100000.*16 to 256",
         setup=s_data, check=no_out, one_line=True, memory_gib=4),
    Case("units-top-images-huge", "units", "`--top-images 1000000000`",
         A("units", "data", "-o", "out", "--top-images", "1000000000"), 2,
         r"--top-images=1000000000.*1 to 100", setup=s_data, check=no_out, one_line=True,
         memory_gib=4),
    Case("units-workers-neg", "units", "`--workers -1`",
         A("units", "data", "-o", "out", "--workers", "-1"), 2, r"--workers=-1.*0 to 64",
         setup=s_data, check=no_out, one_line=True, memory_gib=4),
    Case("synth-size-huge", "synth", "`--size 20000` (each image rendered at full size)",
         A("synth", "out", "--size", "20000"), 2, r"size must be <= 1024", check=no_out,
         one_line=True, memory_gib=4),
    Case("serve-batch-wait-huge", "serve", "`--batch-wait-ms 1e9` (no answer for 11 days)",
         A("serve", "--port", "0", "--batch-wait-ms", "1e9"), 2,
         r"--batch-wait-ms 1000000000.0: expected milliseconds from 0 to 1000", one_line=True),
    Case("serve-upload-nan", "serve", "`--max-upload-mb nan`",
         A("serve", "--port", "0", "--max-upload-mb", "nan"), 2, r"--max-upload-mb nan",
         one_line=True),
    Case("serve-upload-inf", "serve", "`--max-upload-mb inf`",
         A("serve", "--port", "0", "--max-upload-mb", "inf"), 2, r"--max-upload-mb inf",
         one_line=True),
    Case("score-xml-entity-bomb", "score",
         "an ILSVRC XML box file of 800 bytes with nested entities (\"billion laughs\")",
         A("score", "data", "--maps", "maps", "-o", "out"), 2,
         r"ILSVRC2012_val_00000002\.xml:2: refused: a document type declaration",
         setup=s_xml_bomb, check=no_out, timeout=60),
    Case("explain-spec-num-classes-huge", "explain", "a model's spec.json with `num_classes` 10**12",
         A("explain", "imgs", "-m", "mymodel", "-k", "1", "-o", "out"), 2,
         r"mymodel/spec\.json: num_classes must be a positive integer no larger than 100000",
         setup=s_spec(lambda d: d.update(num_classes=10**12)), check=no_out, memory_gib=4),
    Case("explain-spec-input-size-huge", "explain",
         "a model's spec.json with `input_size` [100000, 100000]",
         A("explain", "imgs", "-m", "mymodel", "-k", "1", "-o", "out"), 2,
         r"mymodel/spec\.json: preprocess: input_size=\(100000, 100000\).*1 to 2048",
         setup=s_spec(lambda d: d["preprocess"].update(input_size=[100000, 100000])),
         check=no_out, memory_gib=4),
    Case("explain-spec-width-huge", "explain",
         "a model's spec.json with `arch_kwargs` width 10**9",
         A("explain", "imgs", "-m", "mymodel", "-k", "1", "-o", "out"), 2,
         r"mymodel/spec\.json: arch_kwargs\.width: width=1000000000.*1 to 512",
         setup=s_spec(lambda d: d["arch_kwargs"].update(width=10**9)), check=no_out,
         memory_gib=4),
    Case("evaluate-csv-wordnet-ids", "evaluate",
         "an ImageNet subset in the CSV layout, labels WordNet ids (`n02124075`)",
         A("evaluate", "data/annotations.csv", "--workers", "0", "-o", "out"), 0,
         r"scored / failed: 2 / 0", setup=s_wnid_csv, check=k_wnid_labels),
    Case("evaluate-cub-wordnet-ids", "evaluate",
         "an ImageNet subset in the CUB layout, classes `0001.n02124075`",
         A("evaluate", "data", "--split", "test", "--workers", "0", "-o", "out"), 0,
         r"scored / failed: 2 / 0", setup=s_wnid_cub, check=k_wnid_labels),
    Case("evaluate-synsets-imagenet", "evaluate",
         "`--synsets imagenet` (the 1000 ImageNet classes; no such file)",
         A("evaluate", "data/annotations.csv", "--synsets", "imagenet", "--workers", "0", "-o",
           "out"), 0, r"scored / failed: 2 / 0", setup=s_wnid_csv, check=k_wnid_labels),
    Case("evaluate-box-outside-no-sizes", "evaluate",
         "no image_sizes.txt; a box 0,0,5000,5000 on a 32 x 32 image", A(*EVAL), 2,
         r"localization\.txt:1: images/test/00036\.png: box .* lies outside the 32x32 image",
         setup=s_box_no_sizes, check=no_out),
    Case("score-box-outside-no-sizes", "score",
         "no image_sizes.txt; a box 0,0,5000,5000 on a 32 x 32 image", A(*SCORE), 2,
         r"localization\.txt:1: images/test/00036\.png: box .* lies outside the 32x32 image",
         setup=s_box_no_sizes, check=no_out),
    Case("score-boxes-images-5", "score", "`--boxes` COCO file with `\"images\": 5`",
         A(*SCORE_BOXES), 2, r"boxes\.json: images: expected a list, got 5",
         setup=s_box_file(_coco(images=5)), check=no_out, one_line=True),
    Case("score-boxes-annotations-7", "score", "`--boxes` COCO file with `\"annotations\": 7`",
         A(*SCORE_BOXES), 2, r"boxes\.json: annotations: expected a list, got 7",
         setup=s_box_file(_coco(annotations=7)), check=no_out, one_line=True),
    Case("score-boxes-score-high", "score", "`--boxes` COCO file with `\"score\": \"high\"`",
         A(*SCORE_BOXES), 2, r"boxes\.json: annotations\[0\]\.score: expected a finite number",
         setup=s_box_file(_coco(annotations__0__score="high")), check=no_out, one_line=True),
    Case("score-boxes-score-null", "score", "`--boxes` COCO file with `\"score\": null`",
         A(*SCORE_BOXES), 2, r"annotations\[0\]\.score: expected a finite number, got null",
         setup=s_box_file(_coco(annotations__0__score=None)), check=no_out, one_line=True),
    Case("score-boxes-camloc-path-5", "score", "`--boxes` COCO file with `\"camloc_path\": 5`",
         A(*SCORE_BOXES), 2, r"images\[0\]\.camloc_path: expected a file path",
         setup=s_box_file(_coco(images__0__camloc_path=5)), check=no_out, one_line=True),
    Case("score-boxes-image-id-1e400", "score", "`--boxes` COCO file with `image_id: 1e400`",
         A(*SCORE_BOXES), 2, r"annotations\[0\]\.image_id: expected a whole number, got inf",
         setup=s_box_file(_coco().replace('"image_id": 1,', '"image_id": 1e400,')),
         check=no_out, one_line=True),
    Case("score-boxes-class-id-1e999", "score",
         "`--boxes` COCO file with `camloc_class_id: 1e999`", A(*SCORE_BOXES), 2,
         r"categories\[0\]\.camloc_class_id: expected a whole number, got inf",
         setup=s_box_file(_coco().replace('"camloc_class_id": 0', '"camloc_class_id": 1e999')),
         check=no_out, one_line=True),
    Case("score-boxes-nul-path", "score", "`--boxes` COCO file with a NUL in `camloc_path`",
         A(*SCORE_BOXES), 2, r"images\[0\]\.camloc_path: .*got a NUL character",
         setup=s_box_file(_coco(images__0__camloc_path="/tmp/a\x00.png")), check=no_out,
         one_line=True),
    Case("score-boxes-jsonl-class-ids", "score",
         "`--boxes` results.jsonl with non-numeric `class_ids`", A(*SCORE_BOXES), 2,
         r"boxes\.json: record 1 .*class_ids\[0\]: expected a whole number, got \"red\"",
         setup=s_box_file(json.dumps({**_RESULT, "class_ids": ["red"]}) + "\n"),
         check=no_out, one_line=True),
    Case("score-boxes-jsonl-probs", "score", "`--boxes` results.jsonl with non-numeric `probs`",
         A(*SCORE_BOXES), 2, r"record 1 .*probs\[0\]: expected a finite number, got \"high\"",
         setup=s_box_file(json.dumps({**_RESULT, "probs": ["high"]}) + "\n"), check=no_out,
         one_line=True),
    Case("score-boxes-jsonl-nul-path", "score", "`--boxes` results.jsonl with a NUL in `path`",
         A(*SCORE_BOXES), 2, r"record 1 .*path: .*got a NUL character",
         setup=s_box_file(json.dumps({**_RESULT, "path": "data/images/test/\x00.png"}) + "\n"),
         check=no_out, one_line=True),
    Case("score-boxes-good", "score", "`--boxes` a well-formed COCO file (one image of 12)",
         A(*SCORE_BOXES), 0, r"", setup=s_box_file(_coco()),
         check=lambda c, r: json.loads((c.work / "out" / "report.json").read_text())
         ["counts"]["matched"] == 1),
]


# --------------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------------


def _snapshot(*roots: Path) -> dict[str, tuple[bool, int, int]]:
    snap = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                snap[str(p)] = (p.is_symlink(), st.st_size if not p.is_dir() else 0,
                                st.st_mtime_ns if not p.is_dir() else 0)
    return snap


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = []
        if case.fix:
            marks.append(pytest.mark.xfail(strict=True, reason=f"fixed on branch {case.fix}"))
        if case.slow:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_case(case: Case, shared: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "case"
    (work / "home").mkdir(parents=True)
    c = Ctx(work, shared)
    if case.setup:
        case.setup(c)
    args = case.args(c)
    allowed = [work / w for w in (*case.writes, "home", "cache")]
    before = _snapshot(work, shared["root"])
    if case.runner:
        r = case.runner(c, args)
        before = {k: v for k, v in before.items() if k.startswith(str(shared["root"]))}
        allowed.append(work)  # the runner made its own inputs; only --out is checked below
    else:
        r = c.run(args, memory_gib=case.memory_gib, timeout=case.timeout)
    text = r.stdout + r.stderr
    assert r.returncode == case.rc, f"exit {r.returncode}, expected {case.rc}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert re.search(case.says, text, re.S | re.I), f"output lacks /{case.says}/:\n{text[-3000:]}"
    if case.rc == 2:
        err = [line for line in r.stderr.splitlines() if line.strip()]
        assert err and err[0].startswith("error: "), r.stderr
        if case.one_line:
            assert len(err) == 1, r.stderr
    after = _snapshot(work, shared["root"])
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    outside = [p for p in changed if not any(Path(p) == a or a in Path(p).parents
                                             for a in allowed)]
    assert not outside, f"changed outside the output folder: {outside}"
    temps = [p for p in after if p.endswith(".tmp") and p not in before]
    assert not temps, f"half-written files left: {temps}"
    if case.check:
        assert case.check(c, r) is not False


def test_table_is_big_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 60
    assert {c.verb for c in CASES} >= {"cli", "explain", "evaluate", "score", "synth", "train",
                                       "probe"}


# --------------------------------------------------------------------------------------------------
# docs/reliability.md
# --------------------------------------------------------------------------------------------------


def _expected(case: Case) -> str:
    if case.expect:
        return case.expect
    if case.rc == 2:
        return "exit 2, one-line error" if case.one_line else "exit 2, error message"
    if case.rc == 1:
        return "exit 1, the rest done, failure listed"
    if case.rc == 130:
        return "exit 130, partial results valid, rerun completes"
    return "exit 0, correct outputs"


def render_doc() -> str:
    tried = len(CASES)
    open_ = sum(1 for c in CASES if c.fix)
    clear = sum(1 for c in CASES if not c.fix and c.rc == 2)
    correct = tried - open_ - clear
    lines = [
        "# Reliability: bad inputs and interruptions",
        "",
        "Generated from the table in `tests/reliability/test_reliability.py` (do not edit by hand:",
        "`CAMLOC_WRITE_RELIABILITY_DOC=1 pytest tests/reliability -k doc` rewrites it).",
        "",
        "Each case runs `python -m camloc ...` in a subprocess, the way users run it, and checks:",
        "the exit code; that no traceback is printed; that the output names the problem; that",
        "nothing is left half-written (`*.tmp`); that nothing outside the case's output folder",
        "changed; and what is on disk afterwards (nothing lost, nothing duplicated).",
        "",
        "Verdicts: **clear error** (refused with exit 2 and a message naming the problem, nothing",
        "written), **correct outcome** (the run completes and the outputs are right; exit 1 when",
        "some inputs failed and are listed), **open** (fails today; the case is marked",
        "`xfail(strict=True)` and flips when the named branch lands).",
        "",
        f"**{tried} tried: {clear} clear error, {correct} correct outcome, {open_} open.**",
        "Run: `PYTHONPATH=src python -m pytest tests/reliability -q -n 0 -rxX`.",
        "",
        "Decisions the cases pin down:",
        "",
        "- Usage errors (any verb): exit 2, one line `error: ...; see 'camloc VERB --help'`.",
        "- Every verb's `--out` (explain, evaluate, compare, units, train, probe, score) is locked",
        "  while a run writes (`OUT/.camloc.lock`, `flock`); a second run into it is refused at",
        "  once (exit 2), naming the process holding it.",
        "- Resume is keyed on the resolved absolute path; the settings that determine the results",
        "  are stored in `manifest.json`, and a re-run with other settings is refused (pass",
        "  `--overwrite` to redo everything with the new settings, or choose another `--out`).",
        "  Everything (the model included) is validated before anything is written.",
        "- camloc never writes through a symbolic link: outputs, and folders under `--out`, that",
        "  are links are refused (`camloc.io.make_out_dir`, every verb); a model folder's",
        "  `weights_file` must lie inside it.",
        "- camloc deletes or replaces only what it made: its temporary files carry `.camloc-` in",
        "  their names, its export folders (`yolo/`, `voc/`) a `.camloc-export` marker; a user's",
        "  own files in `--out` are kept, or the run is refused.",
        "- `errors.jsonl` is replaced atomically at the end of each run: this run's failures plus",
        "  earlier ones for inputs this run did not look at.",
        "",
        "| # | verb | case | expected | verdict |",
        "|---|------|------|----------|---------|",
    ]
    for i, c in enumerate(CASES, 1):
        what = c.what.replace("|", "\\|")
        lines.append(f"| {i} | {c.verb} | {what} (`{c.id}`) | {_expected(c)} | {c.verdict} |")
    return "\n".join(lines) + "\n"


def test_doc_matches_table() -> None:
    text = render_doc()
    if os.environ.get("CAMLOC_WRITE_RELIABILITY_DOC"):
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == text, (
        "docs/reliability.md is stale: CAMLOC_WRITE_RELIABILITY_DOC=1 pytest tests/reliability -k doc")
