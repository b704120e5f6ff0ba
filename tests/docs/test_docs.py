"""Every shell and Python block of README.md, CONTRIBUTING.md and docs/**/*.md, run as a reader
would (see docs_harness for the rules and the ``<!-- docs-test: ... -->`` annotations)."""

from __future__ import annotations

from pathlib import Path

import pytest

import docs_harness

REPO = Path(__file__).resolve().parents[2]
#: The blocks are split over two test modules by file (this one and test_docs_b.py) so that
#: pytest-xdist's ``--dist loadfile`` runs them on two workers; a file's blocks stay together,
#: in order, in one worker (they share state as a reader's session would).
SECOND_HALF = ("docs/pseudo-labels.md", "docs/reliability.md", "docs/training.md", "docs/ui.md",
               "docs/units.md")


def blocks(second_half: bool) -> list[docs_harness.Block]:
    return [b for b in docs_harness.collect(REPO) if (b.path in SECOND_HALF) == second_half]


BLOCKS = blocks(second_half=False)


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
