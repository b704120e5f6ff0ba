"""The explain package and its job runner: the public names, inputs inside --out, and
``--calibrate`` files that are not reports (a device, a FIFO, a huge file) refused at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from camloc.errors import ConfigError


def _camloc(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "camloc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_package_keeps_the_public_surface():
    code = (
        "import camloc\n"
        "import camloc.explain.run as er\n"
        "from camloc.explain import explain, explain_batch, Explanation, run_explain_job\n"
        "assert camloc.explain is explain and callable(camloc.explain)\n"
        "assert camloc.explain.run is er and er.run_explain.__name__ == 'run_explain'\n"
        "import camloc.explain.job\n"
        "assert camloc.explain.job.run_explain_job is run_explain_job\n"
        "assert explain_batch.__module__ == Explanation.__module__ == 'camloc.explain.api'\n"
        "import importlib\n"
        "for old in ('explain_run', 'explain_inputs', 'explain_parts'):\n"
        "    try:\n"
        "        importlib.import_module('camloc.' + old)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('camloc.' + old + ' still imports')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_job_modules_import_light():
    code = ("import sys, camloc.explain.job, camloc.compare.job, camloc.evaluation.calibration\n"
            "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'PIL') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_an_image_named_inside_out_is_explained(tiny_model, samples_dir, tmp_path):
    """`camloc explain photos/x.jpg --out photos` (and `--out .`) explains x.jpg; it used to
    exit 0 with '0 explained of 0 found'."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(samples_dir / "chelsea.jpg", photos / "x.jpg")
    r = _camloc("explain", "photos/x.jpg", "--out", "photos", "-m", str(tiny_model), "-k", "1",
                "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 explained" in r.stderr and "of 1 found" in r.stderr
    [rec] = [json.loads(x) for x in (photos / "results.jsonl").read_text().splitlines()]
    assert rec["path"] == str((photos / "x.jpg").resolve())
    # `explain . --out .` walks the folder: the photo is done, the overlays are not inputs
    r = _camloc("explain", ".", "--out", ".", "-m", str(tiny_model), "-k", "1", "--device",
                "cpu", cwd=photos)
    assert r.returncode == 0, r.stderr
    assert "of 1 found" in r.stderr and "1 skipped" in r.stderr


def test_a_walk_leaves_out_the_output_folder_it_meets(tmp_path):
    from camloc.explain.inputs import ExplainInputs

    for rel in ("a.jpg", "out/overlays/a.png", "out/mine.jpg", "sub/b.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    out = (tmp_path / "out").resolve()

    def names(*paths):
        return [i.path.name for i in ExplainInputs(paths=list(paths)).stream(exclude=out)]

    assert names(tmp_path) == ["a.jpg", "b.jpg"]  # a walk that meets out: none of it
    assert names(tmp_path / "out") == ["mine.jpg"]  # a walk of out itself: its own folders out
    assert names(str(tmp_path / "out" / "*" / "*.png")) == []  # a glob: its own folders out
    assert names(tmp_path / "out" / "overlays" / "a.png") == ["a.png"]  # named: explained


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "huge"])
def test_calibrate_refuses_what_is_not_a_report_at_once(kind, tmp_path, monkeypatch):
    """Every verb's --calibrate reader (one module) refuses at once; /dev/zero or a FIFO with no
    writer used to be read forever."""
    from camloc.evaluation import calibration as cal

    path = tmp_path / "report.json"
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        monkeypatch.setattr(cal, "CALIBRATION_MAX_BYTES", 1000)
        path.write_text(json.dumps({"localization": {"maxboxacc_v1": {"threshold": 0.3}},
                                    "pad": "x" * 2000}))
    readers = [lambda: cal.read_calibration(path), lambda: cal.calibration_threshold(str(path)),
               lambda: cal.load_calibration(str(path), ["cam"])]
    for read in readers:
        done: list[BaseException] = []

        def go(read=read, done=done):
            try:
                read()
            except BaseException as exc:  # noqa: BLE001
                done.append(exc)

        t = threading.Thread(target=go, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), f"--calibrate {path} was read without end"
        assert len(done) == 1 and isinstance(done[0], ConfigError), done
        msg = str(done[0])
        assert msg.startswith(f"--calibrate {path}") and "\n" not in msg
        assert {"device": "not a regular file", "fifo": "not a regular file",
                "folder": "folder", "huge": "larger than"}[kind] in msg


def test_calibrate_dev_zero_exits_2_on_the_command_line(tmp_path, samples_dir):
    from camloc.data.synth import make_synth

    shutil.copy(samples_dir / "chelsea.jpg", tmp_path / "x.jpg")
    make_synth(tmp_path / "data", classes=2, images=4, size=32, seed=0)
    for verb in (["explain", "x.jpg", "-o", "o"], ["evaluate", "data", "--split", "test", "-o", "o"],
                 ["compare", "data", "--split", "test", "-o", "o"]):
        r = _camloc(*verb, "--calibrate", "/dev/zero", cwd=tmp_path, timeout=60)
        assert r.returncode == 2, (verb, r.stderr)
        assert "--calibrate /dev/zero: not a regular file" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_calibrated_report_sets_threshold_and_normalization(tmp_path):
    from camloc.evaluation.calibration import read_calibration

    p = tmp_path / "r.json"
    p.write_text(json.dumps({"protocol": {"name": "wsol"}, "model": {"name": "m"},
                             "localization": {"maxboxacc_v1": {"threshold": 0.3, "value": 60}}}))
    c = read_calibration(p, "m")
    assert (c.threshold, c.normalization, c.source["protocol"]) == (0.3, "minmax", "wsol")
    with pytest.raises(ConfigError, match="made with m, but this run explains with other"):
        read_calibration(p, "other")
