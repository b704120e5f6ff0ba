"""Every shell and Python block of README.md, CONTRIBUTING.md and docs/**/*.md, run as a reader
would (see docs_harness for the rules and the ``<!-- docs-test: ... -->`` annotations)."""

from __future__ import annotations

from pathlib import Path

import pytest

import docs_harness

REPO = Path(__file__).resolve().parents[2]
BLOCKS = docs_harness.collect(REPO)


def _param(block: docs_harness.Block):
    marks = [pytest.mark.docs]
    if block.slow:
        marks.append(pytest.mark.slow)
    if block.needs_dev_set:
        marks.append(pytest.mark.devset)
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_doc_block(block: docs_harness.Block, doc_runners) -> None:
    runner = doc_runners(block.path)
    why = runner.runnable(block)
    if why is not None:
        pytest.skip(f"{block.id}: {why}")
    out = runner.run(block)
    if not out.ok:
        pytest.fail(f"{block.id} ({block.kind}) failed: {out.message} after {out.seconds:.1f} s\n"
                    f"--- code ---\n{block.code}--- output (last 4000 chars) ---\n"
                    f"{out.output[-4000:]}", pytrace=False)
