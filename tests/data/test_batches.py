"""The one batch runner (camloc.data.batches): block boundaries, pinned order across workers,
failures reported and left out, errors of the decode thread raised in the consumer."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image

from camloc.data.batches import (decoded_batches, loader_batches, prefetch, split_failures,
                                 stack_inputs)
from camloc.data.sample import Sample
from camloc.preprocess import Preprocess


def test_batches_never_span_two_blocks_and_skip_failures():
    sizes = {i: (4, 4) for i in range(10)}
    sizes[2] = sizes[7] = None

    def load(i):
        if sizes[i] is None:
            raise OSError(5, "I/O error")
        return Image.new("RGB", sizes[i])

    failed = []
    got = [(n, items) for n, items, _ in decoded_batches(
        range(10), 3, load, lambda i, why: failed.append((i, why)), block=lambda i: i // 4)]
    # blocks 0-3, 4-7, 8-9; batch size 3 counts readable images; a block starts a new batch,
    # and inputs consumed without an image (7, failed) still come out, as an empty batch
    assert got == [(4, [0, 1, 3]), (3, [4, 5, 6]), (1, []), (2, [8, 9])]
    assert failed == [(2, "I/O error"), (7, "I/O error")]


def test_without_fail_the_error_is_raised_in_the_consumer():
    def load(i):
        if i == 3:
            raise ValueError("broken")
        return Image.new("RGB", (2, 2))

    seen = []
    with pytest.raises(ValueError, match="broken"):
        for _, items, _ in prefetch(decoded_batches(range(6), 2, load, None)):
            seen.extend(items)
    assert seen == [0, 1]


def test_prefetch_thread_is_stopped_when_the_consumer_stops_early():
    before = threading.active_count()
    batches = prefetch(iter(range(1000)), depth=2)
    assert next(batches) == 0
    batches.close()
    assert threading.active_count() == before


def _samples(tmp_path, n):
    out = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        if i % 4 == 2:
            p.write_bytes(b"not an image")
        else:
            Image.new("RGB", (10 + i, 8), (i * 20, 0, 0)).save(p)
        size = (99, 99) if i == 5 else None  # metadata that disagrees with the file
        out.append(Sample(p.name, p, i % 3, [], size))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_keep_input_order_and_report_failures(tmp_path, workers):
    samples = _samples(tmp_path, 9)
    pre = Preprocess(input_size=(8, 8))
    failed, order, firsts = [], [], []
    for chunk in loader_batches(samples, pre, batch_size=4, workers=workers, check_size=True):
        good = split_failures(chunk, samples, failed)
        order.extend(i for i, _, _, _ in good)
        firsts.append(chunk[0][0])
        x = stack_inputs([t for _, t, _, _ in good], channels_last=True)
        assert x.shape == (len(good), 3, 8, 8)
        assert x.is_contiguous(memory_format=torch.channels_last)
    assert firsts == [0, 4, 8]  # batch_size consecutive inputs, failures included
    assert order == [0, 1, 3, 4, 7, 8]
    assert [f["image_id"] for f in failed] == ["2.png", "5.png", "6.png"]
    assert "99" in failed[1]["error"]


def test_split_failures_with_an_offset_names_the_right_items(tmp_path):
    samples = _samples(tmp_path, 4)
    failed = []
    [chunk] = loader_batches(samples[1:], Preprocess(input_size=(8, 8)), batch_size=8)
    good = split_failures(chunk, samples, failed, offset=1)
    assert [i for i, _, _, _ in good] == [0, 2]  # positions in the list handed to the loader
    assert [f["image_id"] for f in failed] == ["2.png"]
