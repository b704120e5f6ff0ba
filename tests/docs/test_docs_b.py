"""The second half of the documentation blocks (see ``SECOND_HALF`` in test_docs.py)."""

from __future__ import annotations

import pytest

import docs_harness
from test_docs import _param, blocks, test_doc_block as _run_block

BLOCKS = blocks(second_half=True)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_doc_block(block: docs_harness.Block, doc_runners) -> None:
    _run_block(block, doc_runners)
