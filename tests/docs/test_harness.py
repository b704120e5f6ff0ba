"""The docs harness itself: block extraction, annotations, placeholders, and that a failing block
fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import docs_harness as dh

DOC = '''# Title

Text with `inline` code.

```bash
echo one
```

<!-- docs-test: skip (needs a GPU) -->
```bash
nvidia-smi
```

<!-- docs-test: slow (trains a model); exit 2 -->

```python
x = 1
```

```json
{"a": 1}
```

```
plain layout
```

* a list item:

  ```python
  y = 2
  ```

<!-- docs-test: expect "a \\"quoted\\" word"; replace "--epochs 12" => "--epochs 1" -->
<!-- docs-test: timeout 5 -->
~~~sh
camloc train --epochs 12
~~~

<!-- docs-test: skip -->
```bash
true
```

<!-- docs-test: skpi (typo) -->
```bash
true
```

<!-- docs-test: skip (not bound: text follows) -->
Some text.

```bash
camloc synth OUT [--classes 4] [--images 400]
```
'''


def blocks():
    return dh.extract_blocks(DOC, "docs/x.md")


def test_extracts_blocks_with_lines_and_kinds():
    bs = blocks()
    assert [(b.line, b.lang, b.kind) for b in bs] == [
        (5, "bash", "shell"), (10, "bash", "shell"), (16, "python", "python"),
        (20, "json", "figure"), (24, "", "figure"), (30, "python", "python"),
        (36, "sh", "shell"), (41, "bash", "shell"), (46, "bash", "shell"), (53, "bash", "shell")]
    assert bs[0].code == "echo one\n" and bs[0].id == "docs/x.md:5"
    assert bs[5].code == "y = 2\n"              # indented fence inside a list item, dedented
    assert bs[2].body_line == 17
    assert bs[6].code == "camloc train --epochs 12\n"


def test_annotations():
    bs = blocks()
    assert bs[0].skip is None and bs[0].slow is None and bs[0].exit_code == 0
    assert bs[1].skip == "needs a GPU"
    assert bs[2].slow == "trains a model" and bs[2].exit_code == 2      # blank line allowed
    assert bs[6].expect == ['a "quoted" word']
    assert bs[6].replace == [("--epochs 12", "--epochs 1")]
    assert bs[6].timeout == 5 and bs[6].runnable_code() == "camloc train --epochs 1\n"
    assert bs[2].effective_timeout() == dh.SLOW_TIMEOUT
    assert bs[0].effective_timeout() == dh.DEFAULT_TIMEOUT


def test_bad_annotations_are_errors_not_skips():
    bs = blocks()
    assert "skip needs a reason" in bs[7].annotation_error and bs[7].skip is None
    assert "unknown docs-test directive 'skpi (typo)'" in bs[8].annotation_error
    assert bs[8].annotation_error.startswith("docs/x.md:45:")
    assert bs[9].skip is None and bs[9].annotation_error is None     # text in between unbinds


def test_replace_of_missing_text_is_an_error():
    b = dh.Block("d.md", 1, "bash", "echo a\n", replace=[("zzz", "b")])
    with pytest.raises(dh.AnnotationError, match="'zzz' is not in the block"):
        b.runnable_code()


def test_synopsis_and_dev_set_detection():
    bs = blocks()
    assert bs[9].synopsis and not bs[0].synopsis
    assert not dh.Block("d.md", 1, "python", "f([--x])\n").synopsis       # only shell blocks
    multi = dh.Block("d.md", 1, "bash", "camloc evaluate DATASET [--model M] \\\n    [--out DIR]\n")
    assert multi.synopsis
    mixed = dh.Block("d.md", 1, "bash", "camloc score --maps DIR DATASET\n"
                     "torchrun --nproc_per_node=2 -m camloc evaluate DATASET ...\n")
    assert mixed.synopsis
    assert not dh.Block("d.md", 1, "bash", "camloc evaluate DATASET [--x]\nls\n").synopsis
    assert not dh.Block("d.md", 1, "bash", "camloc explain x.jpg --out OUTPUT\n").synopsis
    assert dh.Block("d.md", 1, "bash", "camloc evaluate ../shared/data/imagenet-val-dev\n").needs_dev_set


def test_collect_covers_every_doc(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "README.md").write_text("```bash\necho r\n```\n")
    (tmp_path / "docs" / "a.md").write_text("```python\npass\n```\n```text\nno\n```\n")
    (tmp_path / "docs" / "sub" / "b.md").write_text("```sh\necho b\n```\n")
    ids = [b.id for b in dh.collect(tmp_path)]
    assert ids == ["README.md:1", "docs/a.md:1", "docs/sub/b.md:1"]


@pytest.fixture
def runner(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    fx = dh.Fixtures(repo=repo, root=tmp_path, dev_set=None)
    fx.prepare()

    def make(doc: str) -> dh.DocRunner:
        return dh.DocRunner(repo, fx, "docs/t.md", dh.extract_blocks(doc, "docs/t.md"))

    made: list[dh.DocRunner] = []
    yield lambda doc: made.append(make(doc)) or made[-1]
    for r in made:
        r.close()


def test_blocks_run_in_order_share_state_and_failures_fail(runner):
    doc = ("```bash\necho hi > made.txt\nls my-photos | wc -l > n.txt\n```\n"
           "```python\nx = open('made.txt').read().strip()\n```\n"
           "```python\nassert x == 'hi', x\nprint('seen', x)\n```\n"
           "```python\n\n1 / 0\n```\n"
           "```bash\nfalse\necho never\n```\n"
           "<!-- docs-test: exit 3 -->\n```bash\nexit 3\n```\n"
           "<!-- docs-test: expect \"absent text\" -->\n```bash\necho present\n```\n"
           "```bash\ntest -f photo.jpg && test -f new-photo.jpg && test -d src\n"
           "test \"$(command -v python)\" = \"" + str(Path(sys.executable).parent) + "/python\"\n```\n")
    r = runner(doc)
    bs = r.blocks
    third = r.run(bs[2])                         # runs blocks 0 and 1 first, as setup
    assert third.ok, third.output
    assert "seen hi" in third.output
    assert (r.work / "n.txt").read_text().strip() == "4"   # one folder per sample photo
    zero = r.run(bs[3])
    assert not zero.ok and "ZeroDivisionError" in zero.output
    assert 'File "docs/t.md", line 14' in zero.output       # the doc's own line number
    false = r.run(bs[4])
    assert not false.ok and "exit code 1, expected 0" in false.message
    assert "never" not in false.output                       # bash -e
    assert r.run(bs[5]).ok                                    # documented exit code
    lacks = r.run(bs[6])
    assert not lacks.ok and "output lacks ['absent text']" in lacks.message
    placeholders = r.run(bs[7])
    assert placeholders.ok, placeholders.output


def test_timeout_fails_and_restarts_the_interpreter(runner):
    doc = ("<!-- docs-test: timeout 1 -->\n```python\nimport time\ntime.sleep(30)\n```\n"
           "```python\nprint('fresh', 'time' in globals())\n```\n")
    r = runner(doc)
    out = r.run(r.blocks[0])
    assert not out.ok and "timed out after 1 s" in out.message
    after = r.run(r.blocks[1])
    assert after.ok and "fresh False" in after.output


def test_python_block_documented_to_fail(runner):
    doc = ("<!-- docs-test: exit 1 -->\n```python\nraise ValueError('on purpose')\n```\n"
           "<!-- docs-test: exit 1 -->\n```python\nok = 1\n```\n")
    r = runner(doc)
    assert r.run(r.blocks[0]).ok
    quiet = r.run(r.blocks[1])
    assert not quiet.ok and "expected the block to raise" in quiet.message


def test_dev_set_blocks_skip_when_absent(runner):
    r = runner("```bash\ncamloc evaluate ../shared/data/imagenet-val-dev\n```\n")
    assert "dev set" in r.runnable(r.blocks[0])


def test_dev_subset_is_a_wsol_copy(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    dev = (repo / ".." / "shared" / "data" / "imagenet-val-dev").resolve()
    if not (dev / "metadata" / "image_ids.txt").is_file():
        pytest.skip(f"dev set not found at {dev}")
    from camloc.data.datasets import open_dataset

    sub = dh.write_dev_subset(dev, tmp_path / "imagenet-val-dev", n=8, classes=(323, 96))
    ds = open_dataset(sub, num_classes=1000)
    full = open_dataset(dev, num_classes=1000)
    assert len(ds) == 8 and ds.format == "wsol"
    assert {323, 96} <= {s.label for s in ds}
    positions = [full.index(s.image_id) for s in ds]
    assert positions == sorted(positions)                       # the dev set's order
    for s in ds:
        ref = full[full.index(s.image_id)]
        assert s.label == ref.label and (s.boxes == ref.boxes).all() and s.size == ref.size
