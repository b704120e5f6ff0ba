"""camloc.viz.png (the overlay PNG encoder) and camloc.viz.writer (the ordered background writer)."""

from __future__ import annotations

import io
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from camloc.viz import png
from camloc.viz.png import png_bytes
from camloc.viz.writer import OrderedWriter


@pytest.mark.parametrize("shape", [(227, 1151, 3), (1, 1, 3), (5, 7), (9, 4, 4), (3, 2, 2),
                                   (64, 1, 3)])
def test_png_decodes_to_the_same_pixels_in_pil_and_opencv(shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = png_bytes(a)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(im), a)
    if a.ndim == 3 and a.shape[2] == 3:
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back[:, :, ::-1], a)


def test_png_of_a_pil_image_and_of_a_smooth_picture_is_small():
    y, x = np.mgrid[0:200, 0:300]
    a = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    data = png_bytes(Image.fromarray(a))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), a)
    assert len(data) < a.nbytes / 20  # the Up filter makes the rows' differences compressible


def test_png_split_into_several_idat_chunks_still_decodes(monkeypatch):
    monkeypatch.setattr(png, "_MAX_CHUNK", 1000)
    a = np.random.default_rng(1).integers(0, 256, (80, 90, 3), dtype=np.uint8)
    data = png_bytes(a)
    assert data.count(b"IDAT") > 5
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), a)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros(4, np.uint8)])
def test_png_refuses_what_it_cannot_encode(bad):
    with pytest.raises(ValueError, match="png_bytes"):
        png_bytes(bad)


def test_writer_hands_results_back_in_order_whatever_order_they_finish_in():
    def job(i):
        time.sleep(0.002 * (5 - i % 5))  # later jobs finish first
        return i * 10

    with OrderedWriter(workers=3, max_pending=4) as w:
        got = []
        for i in range(20):
            got += w.submit(i, job, i)
        got += w.drain()
    assert [d.tag for d in got] == list(range(20))
    assert [d.value for d in got] == [i * 10 for i in range(20)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_job_is_its_own_result_and_the_others_go_on(workers):
    def job(i):
        if i == 3:
            raise OSError(28, "No space left on device")
        return i

    with OrderedWriter(workers=workers) as w:
        got = []
        for i in range(6):
            got += w.submit(i, job, i)
        got += w.drain()
    assert [d.value for d in got] == [0, 1, 2, None, 4, 5]
    assert isinstance(got[3].error, OSError) and [d.error for d in got if d.tag != 3] == [None] * 5


def test_submit_waits_while_max_pending_jobs_are_unfinished():
    gate = threading.Event()
    w = OrderedWriter(workers=1, max_pending=2)
    w.submit(0, gate.wait)
    w.submit(1, gate.wait)
    third: list = []
    t = threading.Thread(target=lambda: third.extend(w.submit(2, lambda: "c")))
    t.start()
    try:
        t.join(0.3)
        assert t.is_alive() and w.pending == 2 and not third  # held back: bounded memory
    finally:
        gate.set()
        t.join(5)
    assert not t.is_alive() and third[0].tag == 0
    assert [d.tag for d in third + w.drain()] == [0, 1, 2]
    w.close()


def test_leaving_on_an_error_drops_jobs_not_started_and_waits_for_the_running_one():
    started, finished = [], []

    def job(i):
        started.append(i)
        time.sleep(0.2)
        finished.append(i)

    with pytest.raises(KeyboardInterrupt):
        with OrderedWriter(workers=1, max_pending=10) as w:
            for i in range(5):
                w.submit(i, job, i)
            time.sleep(0.05)
            raise KeyboardInterrupt
    assert started == finished == [0]  # the running job completed; the queued ones never ran


def test_an_interrupt_inside_a_job_reaches_the_caller():
    def job():
        raise KeyboardInterrupt

    w = OrderedWriter(workers=1)
    with pytest.raises(KeyboardInterrupt):  # from submit or drain, whichever sees it done
        w.submit(0, job)
        w.drain()
    w.close()
