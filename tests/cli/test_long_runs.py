"""Long runs as bulk users run them: ``camloc explain`` over the dev set's real photos as a
subprocess, stderr to a file (``2>log``) and to a pipe (``| tee``), inputs whose count is unknown
while the folder is walked or the list is read from standard input, and progress lines printed
(the interval is made small with ``CAMLOC_PROGRESS_EVERY`` so a short test sees many of them).

The regression this file holds: the plain progress line compared ``done < total`` while ``total``
was still ``None`` (the listing streaming) and the run died with a TypeError after 30 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.devset]


def _env(every: str = "0") -> dict[str, str]:
    env = dict(os.environ, CAMLOC_PROGRESS_EVERY=every, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("COLUMNS", None)
    return env


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_explain_a_folder_with_stderr_to_a_file(dev_set: Path, tiny_model: Path,
                                                tmp_path: Path) -> None:
    """Every dev photo, stderr a file: exit 0, no traceback, progress lines that first say the
    total is unknown (``n/?``) and end on ``511/511 (100%)``."""
    out, log = tmp_path / "out", tmp_path / "log"
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "camloc", "explain", str(dev_set / "images"),
                               "--model", str(tiny_model), "--top-k", "5", "--no-overlays",
                               "--batch-size", "8", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=err, text=True, env=_env(),
                              cwd=tmp_path, timeout=600)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("explain: ")]
    assert any("/?," in ln for ln in lines), lines[:5]  # the listing was still streaming
    n = len(list((dev_set / "images").iterdir()))
    assert lines[-1].startswith(f"explain: {n}/{n} (100%)"), lines[-3:]
    assert "\x1b[" not in text  # no terminal control codes in a log
    recs = _records(out)
    assert len(recs) == n and all(len(r["class_ids"]) == 5 for r in recs)


def test_explain_a_list_from_a_pipe_with_stderr_to_a_pipe(dev_set: Path, tmp_path: Path) -> None:
    """The default model on 40 dev photos named on standard input (``--list -``), stderr a pipe
    (``2>&1 | tee``): the run ends with every photo explained and a progress line per batch."""
    images = sorted((dev_set / "images").iterdir())[:40]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "camloc", "explain", "--list", "-", "-k", "5",
                           "--batch-size", "8", "--out", str(out)],
                          input="".join(f"{p}\n" for p in images), capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("explain: ")]
    assert len(lines) >= 3, proc.stderr[-2000:]
    assert lines[-1].startswith("explain: 40/40 (100%)")
    recs = _records(out)
    assert [r["path"] for r in recs] == [str(p) for p in images]
    assert all((out / r["overlay"]).is_file() for r in recs)


def _dev_subset(dev_set: Path, dst: Path, n: int) -> Path:
    """A wsol-layout dataset of the first ``n`` dev photos (metadata filtered, images linked)."""
    meta = dev_set / "metadata"
    ids = [ln.strip() for ln in (meta / "image_ids.txt").open() if ln.strip()][:n]
    keep = set(ids)
    (dst / "metadata").mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = [ln for ln in (meta / name).open() if ln.split(",")[0].strip() in keep]
        (dst / "metadata" / name).write_text("".join(lines))
    for i in ids:
        (dst / i).parent.mkdir(parents=True, exist_ok=True)
        os.link(dev_set / i, dst / i)
    return dst


def _run_logged(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``python -m camloc ARGS`` with stderr to a log file; returns the process and the log."""
    log = cwd / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "camloc", *args], stdout=subprocess.PIPE,
                              stderr=err, text=True, env=_env(), cwd=cwd, timeout=900)
    return proc, log.read_text()


@pytest.mark.parametrize("verb", ["evaluate", "compare", "units"])
def test_dataset_verbs_with_stderr_to_a_file(verb: str, dev_set: Path, tmp_path: Path) -> None:
    """evaluate, compare and units on 48 real photos with the default model, stderr a log file
    and a progress line per batch: exit 0, no traceback, plain lines (no terminal codes) that end
    on the whole count."""
    data = _dev_subset(dev_set, tmp_path / "data", 48)
    args = {
        "evaluate": ["evaluate", str(data), "--workers", "0", "--gallery", "0",
                     "--batch-size", "16"],
        "compare": ["compare", str(data), "--methods", "cam,gradcam", "--no-faithfulness",
                    "--workers", "0", "--gallery", "0", "--batch-size", "16"],
        "units": ["units", str(data), "--classes", "0,1", "--top-images", "2", "--no-sheets",
                  "--workers", "0", "--batch-size", "16"],
    }[verb]
    proc, text = _run_logged([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text and "\x1b[" not in text
    lines = [ln for ln in text.splitlines() if "/48" in ln and "elapsed" in ln]
    assert lines and lines[-1].split(": ", 1)[1].startswith("48/48 (100%)"), text[-2000:]


def test_explain_a_listing_of_thousands_of_files(dev_set: Path, tiny_model: Path,
                                                 tmp_path: Path) -> None:
    """3,000 photos (hard links to four dev photos) in 30 nested folders, stderr a file: every
    one explained, in listing order, and the progress count unknown while the walk streams."""
    photos = sorted((dev_set / "images").iterdir())[:4]
    root = tmp_path / "many"
    for i in range(3000):
        d = root / f"part{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        os.link(photos[i % 4], d / f"p{i:04d}.jpg")
    out = tmp_path / "out"
    proc, text = _run_logged(["explain", str(root), "--model", str(tiny_model), "-k", "1",
                              "--no-overlays", "--batch-size", "64", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("explain: ")]
    assert any("/?," in ln for ln in lines) and lines[-1].startswith("explain: 3000/3000 (100%)")
    paths = [r["path"] for r in _records(out)]
    assert len(paths) == 3000 and paths == sorted(paths)
