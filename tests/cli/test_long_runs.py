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
