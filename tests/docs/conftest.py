"""Fixtures of the docs tests: the placeholders (made once per session) and one runner per file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_harness  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEV_SET = (REPO / ".." / "shared" / "data" / "imagenet-val-dev").resolve()


@pytest.fixture(scope="session")
def doc_fixtures(tmp_path_factory) -> docs_harness.Fixtures:
    dev = DEV_SET if (DEV_SET / "metadata" / "image_ids.txt").is_file() else None
    fx = docs_harness.Fixtures(repo=REPO, root=tmp_path_factory.mktemp("docs"), dev_set=dev)
    fx.prepare()
    return fx


@pytest.fixture(scope="session")
def doc_runners(doc_fixtures):
    """``doc_runners(path)`` -> the DocRunner of that doc file (one per file per session)."""
    runners: dict[str, docs_harness.DocRunner] = {}
    blocks = docs_harness.collect(REPO)

    def get(path: str) -> docs_harness.DocRunner:
        if path not in runners:
            runners[path] = docs_harness.DocRunner(
                REPO, doc_fixtures, path, [b for b in blocks if b.path == path])
        return runners[path]

    yield get
    for r in runners.values():
        r.close()
