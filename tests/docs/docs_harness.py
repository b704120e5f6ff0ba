"""Docs are tests: find the code blocks of the Markdown docs and run them as a reader would.

Every fenced block tagged ``bash``/``sh``/``shell``/``console`` (shell) or ``python``/``py``
(Python) in README.md, CONTRIBUTING.md and docs/**/*.md is one test item named ``FILE:LINE`` (the
line of the opening fence). Blocks with another tag or none (output, layouts, JSON, tables) are
figures, not code.

How a block runs
----------------
* All blocks of one file share a work folder (a fresh temp folder per file), in document order,
  as a reader would run them: a shell block runs with ``bash -e`` in it, with the venv's ``bin``
  first on PATH (so ``camloc`` and ``python`` are the venv's); Python blocks run in **one fresh
  interpreter per file** (a child process; earlier blocks' variables stay defined), with the
  code compiled under the file's name and line numbers, so a traceback points into the doc.
* Running one block alone (``-k``) first runs the earlier blocks of its file (setup).
* Placeholders: the work folder holds ``photo.jpg``, ``new-photo.jpg`` (sample photos),
  ``my-photos/`` (a folder-per-class set made from the samples), ``imagenet-val-dev`` and
  ``../shared/data/imagenet-val-dev`` (a 16-image subset of the dev set in its own wsol format,
  written once per session, with an image of each class the docs name: DEV_SUBSET_CLASSES), and
  links to the repository's ``src``, ``benchmarks`` and
  ``.venv``. A block that names the dev set is skipped, with the reason, where it is absent.

Annotations
-----------
An HTML comment on the lines just before a block (blank lines allowed between them) changes how
it runs; several directives can share a comment, separated by ``;``::

    <!-- docs-test: skip (needs a GPU) -->          not run; the reason is required
    <!-- docs-test: slow (trains 12 epochs) -->     run, marked ``slow``; the reason is required
    <!-- docs-test: exit 2 -->                      the documented exit code (default 0);
                                                    on a Python block: it must raise
    <!-- docs-test: expect "top-1" -->              the output must contain this text
    <!-- docs-test: replace "--epochs 12" => "--epochs 1" -->   run a lighter equivalent
    <!-- docs-test: timeout 300 -->                 seconds (default 600; slow: 1200)

An unknown directive, a skip/slow without a reason, or a ``replace`` whose text is not in the
block fails that block's test (a typo must never skip a block silently).

A shell block whose lines are usage synopses (``camloc synth OUT [--classes 4] ...``) is not a
command; it is reported as skipped with that reason.
"""

from __future__ import annotations

import functools
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
PYTHON_LANGS = {"python", "py", "python3"}
# hang guards, not speed goals: at least 4x the slowest block's idle time (about a minute)
# so a busy machine never fails a block that works
DEFAULT_TIMEOUT = 600.0
SLOW_TIMEOUT = 1200.0
DEV_SUBSET_SIZE = 16
# classes the docs' examples name (units.md: monarch, pointer, toucan, yurt, jack-o'-lantern)
DEV_SUBSET_CLASSES = (323, 210, 96, 915, 607)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_COMMENT = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
# a usage synopsis line: an optional option in brackets, an elided rest ("..."), or a
# placeholder argument in capitals
_SYNOPSIS = re.compile(r"\[--?[A-Za-z]|(^|\s)\.\.\.(\s|$)|(^|\s)(DATASET|DIR|OUT|PATH|NAME|FILE)(\.\.\.)?(\s|$)")
_DEVSET = re.compile(r"imagenet-val-dev")


class AnnotationError(ValueError):
    """A ``docs-test`` comment that cannot be understood."""


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: str                      # relative to the repository root, with '/'
    line: int                      # 1-based line of the opening fence
    lang: str                      # info string's first word, lower case ('' when none)
    code: str                      # dedented body
    body_line: int = 0             # 1-based line of the body's first line
    skip: str | None = None
    slow: str | None = None
    exit_code: int = 0
    expect: list[str] = field(default_factory=list)
    replace: list[tuple[str, str]] = field(default_factory=list)
    timeout: float | None = None
    annotation_error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def kind(self) -> str:
        """'shell', 'python' or 'figure' (not code)."""
        if self.lang in SHELL_LANGS:
            return "shell"
        if self.lang in PYTHON_LANGS:
            return "python"
        return "figure"

    @property
    def synopsis(self) -> bool:
        """A shell block made only of usage synopses (``verb ARG [--opt]``), not a command."""
        if self.kind != "shell":
            return False
        lines = [ln for ln in _logical_lines(self.code) if ln.strip() and not ln.lstrip().startswith("#")]
        return bool(lines) and all(_SYNOPSIS.search(ln) for ln in lines)

    @property
    def needs_dev_set(self) -> bool:
        return bool(_DEVSET.search(self.code))

    def effective_timeout(self) -> float:
        if self.timeout is not None:
            return self.timeout
        return SLOW_TIMEOUT if self.slow else DEFAULT_TIMEOUT

    def runnable_code(self) -> str:
        """The code to run: the block with its ``replace`` directives applied."""
        code = self.code
        for old, new in self.replace:
            if old not in code:
                raise AnnotationError(f"{self.id}: replace: {old!r} is not in the block")
            code = code.replace(old, new)
        return code


def _logical_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    out: list[str] = []
    buf = ""
    for ln in code.splitlines():
        if ln.rstrip().endswith("\\"):
            buf += ln.rstrip()[:-1] + " "
            continue
        out.append(buf + ln)
        buf = ""
    if buf:
        out.append(buf)
    return out


_DIRECTIVE = re.compile(
    r"""^(?:
        (?P<skip>skip)\s*(?:\((?P<skip_reason>.*)\))? |
        (?P<slow>slow)\s*(?:\((?P<slow_reason>.*)\))? |
        exit\s+(?P<exit>\d+) |
        expect\s+"(?P<expect>(?:[^"\\]|\\.)*)" |
        replace\s+"(?P<old>(?:[^"\\]|\\.)*)"\s*=>\s*"(?P<new>(?:[^"\\]|\\.)*)" |
        timeout\s+(?P<timeout>\d+(?:\.\d+)?)
    )$""",
    re.VERBOSE,
)


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def _split_directives(body: str) -> list[str]:
    """Split on ';' outside double quotes and parentheses."""
    parts: list[str] = []
    buf = ""
    quoted = False
    depth = 0
    prev = ""
    for ch in body:
        if ch == '"' and prev != "\\":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(0, depth - 1)
        if ch == ";" and not quoted and depth == 0:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
        prev = ch
    parts.append(buf)
    return [p.strip() for p in parts if p.strip()]


def apply_annotation(block: Block, body: str) -> None:
    """Apply one ``docs-test:`` comment's directives to ``block`` (raises AnnotationError)."""
    for item in _split_directives(body):
        m = _DIRECTIVE.match(item)
        if not m:
            raise AnnotationError(f"unknown docs-test directive {item!r} (known: skip (reason), "
                                  f"slow (reason), exit N, expect \"text\", "
                                  f"replace \"old\" => \"new\", timeout S)")
        if m.group("skip"):
            reason = (m.group("skip_reason") or "").strip()
            if not reason:
                raise AnnotationError("skip needs a reason: skip (why)")
            block.skip = reason
        elif m.group("slow"):
            reason = (m.group("slow_reason") or "").strip()
            if not reason:
                raise AnnotationError("slow needs a reason: slow (why)")
            block.slow = reason
        elif m.group("exit") is not None:
            block.exit_code = int(m.group("exit"))
        elif m.group("expect") is not None:
            block.expect.append(_unescape(m.group("expect")))
        elif m.group("old") is not None:
            block.replace.append((_unescape(m.group("old")), _unescape(m.group("new"))))
        elif m.group("timeout") is not None:
            block.timeout = float(m.group("timeout"))


def extract_blocks(text: str, path: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their annotations, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []      # (line, comment body) of annotations seen
    i = 0
    while i < len(lines):
        ln = lines[i]
        cm = _COMMENT.match(ln)
        if cm:
            pending.append((i + 1, cm.group("body").strip()))
            i += 1
            continue
        fm = _FENCE.match(ln)
        if not fm:
            if ln.strip():
                pending = []                  # an annotation binds only to the next block
            i += 1
            continue
        fence, indent = fm.group("fence"), len(fm.group("indent").expandtabs())
        info = fm.group("info").strip()
        lang = info.split()[0].lower().strip("{}.") if info else ""
        body: list[str] = []
        j = i + 1
        closing = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j])
            j += 1
        dedented = []
        for b in body:
            exp = b.expandtabs()
            strip = min(indent, len(exp) - len(exp.lstrip(" ")))
            dedented.append(exp[strip:])
        block = Block(path=path, line=i + 1, lang=lang, code="\n".join(dedented) + "\n",
                      body_line=i + 2)
        for cline, cbody in pending:
            try:
                apply_annotation(block, cbody)
            except AnnotationError as exc:
                block.annotation_error = f"{path}:{cline}: {exc}"
        pending = []
        blocks.append(block)
        i = j + 1
    return blocks


def doc_files(repo: Path) -> list[Path]:
    """README.md, CONTRIBUTING.md and every docs/**/*.md, sorted."""
    files = [repo / "README.md", repo / "CONTRIBUTING.md"]
    files += sorted((repo / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


@functools.cache
def collect(repo: Path) -> list[Block]:
    """Every code block (shell or Python) of the docs; figures are left out. Read once per
    session, so the test items and the runners see the same blocks."""
    out: list[Block] = []
    for f in doc_files(repo):
        rel = f.relative_to(repo).as_posix()
        out += [b for b in extract_blocks(f.read_text(encoding="utf-8"), rel) if b.kind != "figure"]
    return out


# --------------------------------------------------------------------------------------------
# placeholders


def write_dev_subset(dev_set: Path, dest: Path, n: int = DEV_SUBSET_SIZE,
                     classes: tuple[int, ...] = DEV_SUBSET_CLASSES) -> Path:
    """A subset of the dev set in its own wsol layout under ``dest``: one image of each class in
    ``classes`` (the docs' examples name them), then the first images, ``n`` in all; the dev
    set's order is kept."""
    meta = dev_set / "metadata"
    all_ids = [ln.strip() for ln in (meta / "image_ids.txt").read_text().splitlines() if ln.strip()]
    label = {}
    for ln in (meta / "class_labels.txt").read_text().splitlines():
        if ln.strip():
            image_id, cls = ln.rsplit(",", 1)
            label[image_id.strip()] = int(cls)
    keep: set[str] = set()
    for c in classes:
        keep.update([i for i in all_ids if label.get(i) == c][:1])
    for i in all_ids:
        if len(keep) >= n:
            break
        keep.add(i)
    ids = [i for i in all_ids if i in keep]
    (dest / "metadata").mkdir(parents=True, exist_ok=True)
    for f in sorted(meta.iterdir()):
        if not f.is_file():
            continue
        if f.suffix != ".txt" or f.name == "class_names.txt":
            shutil.copy2(f, dest / "metadata" / f.name)
            continue
        kept = [ln for ln in f.read_text().splitlines()
                if ln.strip() and ln.split(",")[0].strip() in keep]
        (dest / "metadata" / f.name).write_text("\n".join(kept) + "\n")
    for image_id in ids:
        target = dest / image_id
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dev_set / image_id, target)
    readme = dev_set / "README.md"
    if readme.is_file():
        (dest / "README.md").write_text(f"A {n}-image subset of {dev_set} for the docs tests.\n")
    return dest


def write_class_folders(samples: Path, dest: Path, per_class: int = 4) -> Path:
    """A folder-per-class set: each sample photo is a class, with flipped/cropped variants."""
    from PIL import Image, ImageOps

    for photo in sorted(samples.glob("*.jpg")):
        cls = dest / photo.stem
        cls.mkdir(parents=True, exist_ok=True)
        with Image.open(photo) as im:
            im = im.convert("RGB")
            w, h = im.size
            for k in range(per_class):
                v = ImageOps.mirror(im) if k % 2 else im
                c = k // 2 * 0.08
                v = v.crop((int(c * w), int(c * h), int((1 - c) * w), int((1 - c) * h)))
                v.save(cls / f"{photo.stem}_{k}.jpg", quality=90)
    return dest


@dataclass
class Fixtures:
    """What the placeholders of the docs point to, made once per session under ``root``."""

    repo: Path
    root: Path
    dev_set: Path | None            # the real dev set, None when absent
    dev_subset: Path | None = None
    photos: Path | None = None

    def prepare(self) -> None:
        samples = self.repo / "src" / "camloc" / "assets" / "samples"
        self.photos = write_class_folders(samples, self.root / "fixtures" / "my-photos")
        if self.dev_set is not None:
            self.dev_subset = write_dev_subset(
                self.dev_set, self.root / "shared" / "data" / "imagenet-val-dev")

    def populate(self, work: Path) -> None:
        """Fill a work folder (a child of ``root``) with the placeholders."""
        samples = self.repo / "src" / "camloc" / "assets" / "samples"
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy2(samples / "chelsea.jpg", work / "photo.jpg")
        shutil.copy2(samples / "coffee.jpg", work / "new-photo.jpg")
        assert self.photos is not None
        shutil.copytree(self.photos, work / "my-photos")
        if self.dev_subset is not None:
            (work / "imagenet-val-dev").symlink_to(self.dev_subset)
        for name in ("src", "benchmarks"):
            if (self.repo / name).exists():
                (work / name).symlink_to(self.repo / name)
        (work / ".venv").symlink_to(Path(sys.prefix))


def subprocess_env(repo: Path, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(repo / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["CAMLOC_CACHE"] = str(work / ".cache" / "camloc")     # never the user's ~/.cache
    env["MPLBACKEND"] = "Agg"
    # a doc may write to ~ (caches): give it a home of its own, keeping the real download caches
    home = Path(env.get("HOME") or Path.home())
    env.setdefault("TORCH_HOME", str(home / ".cache" / "torch"))
    env.setdefault("HF_HOME", str(home / ".cache" / "huggingface"))
    env["HOME"] = str(work / ".home")
    (work / ".home").mkdir(parents=True, exist_ok=True)
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


# --------------------------------------------------------------------------------------------
# running


@dataclass
class Outcome:
    ok: bool
    message: str = ""
    output: str = ""
    seconds: float = 0.0


_DRIVER = r"""
import io, json, sys, traceback, contextlib
real_out = sys.stdout
ns = {"__name__": "__main__"}
for raw in sys.stdin:
    req = json.loads(raw)
    buf = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            code = compile("\n" * (req["line"] - 1) + req["code"], req["file"], "exec")
            exec(code, ns)
        except BaseException:
            ok = False
            traceback.print_exc()
    real_out.write(json.dumps({"ok": ok, "output": buf.getvalue()}) + "\n")
    real_out.flush()
"""


class PythonSession:
    """One fresh interpreter per doc file; blocks are executed in it in order."""

    def __init__(self, work: Path, env: dict[str, str], doc_path: str):
        self.work, self.env, self.doc_path = work, env, doc_path
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", _DRIVER], cwd=self.work, env=self.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        return self.proc

    def run(self, code: str, body_line: int, timeout: float) -> Outcome:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        start = time.monotonic()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"code": code, "line": body_line,
                                     "file": self.doc_path}) + "\n")
        proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            self.close()
            return Outcome(False, f"timed out after {timeout:.0f} s (interpreter restarted)",
                           seconds=time.monotonic() - start)
        line = proc.stdout.readline()
        seconds = time.monotonic() - start
        if not line:
            rest = proc.stdout.read() if proc.stdout else ""
            self.close()
            return Outcome(False, "the interpreter died", rest, seconds)
        reply = json.loads(line)
        return Outcome(reply["ok"], "" if reply["ok"] else "raised", reply["output"], seconds)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f:
                    f.close()
            self.proc = None


def run_shell(code: str, work: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str, float]:
    """``bash -e`` on the block in ``work``; (exit code or None on timeout, output, seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", code], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out, time.monotonic() - start
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        return None, out, time.monotonic() - start


class DocRunner:
    """Runs the blocks of one doc file in order, in one work folder."""

    def __init__(self, repo: Path, fixtures: Fixtures, doc_path: str, blocks: list[Block]):
        self.repo, self.fixtures, self.doc_path = repo, fixtures, doc_path
        self.blocks = blocks
        slug = re.sub(r"[^A-Za-z0-9]+", "-", doc_path).strip("-")
        self.work = fixtures.root / f"work-{slug}"
        fixtures.populate(self.work)
        self.env = subprocess_env(repo, self.work)
        self.python = PythonSession(self.work, self.env, doc_path)
        self.done: dict[str, Outcome] = {}

    def runnable(self, block: Block) -> str | None:
        """None when the block runs here, else why it is skipped."""
        if block.annotation_error:
            return None                       # runs, and fails with the error
        if block.skip:
            return block.skip
        if block.synopsis:
            return "usage synopsis, not a command"
        if block.needs_dev_set and self.fixtures.dev_subset is None:
            return ("names the dev set, not found at ../shared/data/imagenet-val-dev "
                    "beside the checkout")
        return None

    def run(self, block: Block) -> Outcome:
        """Run the earlier blocks not run yet (setup), then ``block``."""
        if block.id in self.done:
            return self.done[block.id]
        notes = []
        for earlier in self.blocks:
            if earlier.id == block.id:
                break
            if earlier.id not in self.done and self.runnable(earlier) is None:
                self.done[earlier.id] = self._run_one(earlier)
            prev = self.done.get(earlier.id)
            if prev is not None and not prev.ok:
                notes.append(earlier.id)
        out = self._run_one(block)
        if not out.ok and notes:
            out.message += f" (earlier blocks of this file failed: {', '.join(notes)})"
        self.done[block.id] = out
        if block is self.blocks[-1] or all(b.id in self.done for b in self.blocks
                                           if b.kind == "python" and self.runnable(b) is None):
            self.python.close()      # no Python block left: free the interpreter's memory now
        return out

    def _run_one(self, block: Block) -> Outcome:
        if block.annotation_error:
            return Outcome(False, f"bad annotation: {block.annotation_error}")
        try:
            code = block.runnable_code()
        except AnnotationError as exc:
            return Outcome(False, f"bad annotation: {exc}")
        timeout = block.effective_timeout()
        if block.kind == "shell":
            rc, output, seconds = run_shell(code, self.work, self.env, timeout)
            if rc is None:
                return Outcome(False, f"timed out after {timeout:.0f} s", output, seconds)
            if rc != block.exit_code:
                return Outcome(False, f"exit code {rc}, expected {block.exit_code}", output, seconds)
            outcome = Outcome(True, "", output, seconds)
        else:
            outcome = self.python.run(code, block.body_line, timeout)
            if block.exit_code != 0 and not outcome.ok:
                outcome = Outcome(True, "", outcome.output, outcome.seconds)   # failed on purpose
            elif block.exit_code != 0:
                return Outcome(False, "expected the block to raise", outcome.output, outcome.seconds)
            if not outcome.ok:
                return outcome
        missing = [e for e in block.expect if e not in outcome.output]
        if missing:
            return Outcome(False, f"output lacks {missing!r}", outcome.output, outcome.seconds)
        return outcome

    def close(self) -> None:
        self.python.close()
