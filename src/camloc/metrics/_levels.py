"""Exact per-level box outcomes of one quantised score map: the NumPy/OpenCV engine.

This module is the reference engine (and the fallback when numba is missing or
``CAMLOC_NO_NUMBA=1``); :mod:`camloc.metrics._jit` is the compiled engine that computes the same
outcomes with the same identities, faster. :func:`level_outcomes` picks one (``engine=``).

For a uint8 map ``u`` and a level ``L`` the foreground is ``u > L``. wsolevaluation traces it with
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` and keeps either the contour of largest
``cv2.contourArea`` (V1; ties go to the first contour in OpenCV's order) or every contour (V2, which
includes hole contours). :func:`level_outcomes` reproduces those outcomes for every requested level
of one map without tracing every level. The identities it relies on were checked against OpenCV 5
on thousands of random maps, level by level (tests/metrics/test_metrics_reference.py does so on
every run):

* outer contours are the borders of the 8-connected components; the bounding rectangle of an outer
  contour is its component's bounding box;
* ``contourArea`` of the outer contour of a component without holes is ``Q4 + Q3/2`` over the 2x2
  pixel windows (Q4: windows with all four pixels in the component, Q3: with three);
* a component's number of holes is ``1 - Euler number`` (Gray's bit quads, 8-connected foreground,
  4-connected background), computed from the same windows;
* hole contours are the borders of the 4-connected background regions that do not reach the image
  border; a hole contour's bounding rectangle is the hole's bounding box grown by one pixel.

Components of every level come from one component tree (the merge tree of the upper level sets):
pixels are grouped into steepest-ascent basins (by pointer jumping) under the strict order
(value, 7x7 local sum, index), a basin that meets a higher one at its own peak is absorbed into it,
and the remaining merges are ordered by level (Kruskal). Per group and per grey value the bounding
box and the window sums are tabulated once; a component at a level is a contiguous range of leaves
of the tree, so its box, area and Euler number come from range reductions. Holes come either from
the same tree built on the inverted, framed map (many levels with holes) or from tracing only the
levels and the region where a hole could change a result (few levels). A level whose V1 choice the
tree cannot settle exactly (a tie in contour area, where OpenCV's order decides, or a component with
holes that might be the largest) is traced with OpenCV, so results are identical to the reference.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["contour_boxes_at_level", "level_outcomes", "iou_matrix", "trace_fallbacks"]

_K3 = np.ones((3, 3), np.uint8)
_SMOOTH_BITS = 14  # a 7x7 sum of uint8 values is below 2**14
_KX = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


_WORKSPACE = threading.local()


def _buf(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A per-thread scratch array, reused across calls (avoids re-faulting fresh memory for every
    map, which otherwise costs about a third of the run time)."""
    cache = getattr(_WORKSPACE, "bufs", None)
    if cache is None:
        cache = _WORKSPACE.bufs = {}
    key = (name, shape, np.dtype(dtype).str)
    a = cache.get(key)
    if a is None:
        if len(cache) > 96:
            cache.clear()
        a = cache[key] = np.empty(shape, dtype)
    return a


def iou_matrix(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every box against every GT box with wsolevaluation's +1-pixel convention.

    Both inputs are ``(n, 4)`` integer arrays ``x0, y0, x1, y1`` (inclusive corners). Returns a float64
    ``(len(boxes), len(gt))`` array, computed with the same integer areas and one float division per
    entry as ``calculate_multiple_iou`` (so comparisons with 0.3/0.5/0.7 agree bit for bit).
    """
    a = np.asarray(boxes, dtype=np.int64).reshape(-1, 1, 4)
    b = np.asarray(gt, dtype=np.int64).reshape(1, -1, 4)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    den = area_a + area_b - inter
    bad = den <= 0
    iou = inter / np.where(bad, 1, den)
    iou[bad] = 0.0
    return iou


def contour_boxes_at_level(u8: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward OpenCV trace at one level: ``(v1_box (4,), all_boxes (n, 4))``.

    Exactly wsolevaluation's ``scoremap2bbox``: binary ``u8 > level``, ``findContours(RETR_TREE,
    CHAIN_APPROX_SIMPLE)``, ``boundingRect`` -> ``x0=x, y0=y, x1=min(x+w, W-1), y1=min(y+h, H-1)``; the
    V1 box is the contour of largest ``contourArea`` (first one on ties); no contour -> ``[0,0,0,0]``.
    """
    h, w = u8.shape
    if level >= 255:
        binary = np.zeros_like(u8)
    else:
        _, binary = cv2.threshold(u8, int(level), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        z = np.zeros((1, 4), np.int64)
        return z[0].copy(), z
    boxes = np.empty((len(contours), 4), np.int64)
    for i, c in enumerate(contours):
        x, y, bw, bh = cv2.boundingRect(c)
        boxes[i] = (x, y, min(x + bw, w - 1), min(y + bh, h - 1))
    areas = [cv2.contourArea(c) for c in contours]
    best = max(range(len(contours)), key=areas.__getitem__)
    return boxes[best].copy(), boxes


@lru_cache(maxsize=16)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    n = h * w
    bits = max(1, int(n - 1).bit_length())
    if 8 + _SMOOTH_BITS + bits > 52:
        raise ValueError(f"score maps of {h}x{w} pixels are too large for the component tree")
    idx = np.arange(n, dtype=np.int64)
    idxf = idx.reshape(h, w).astype(np.float64)
    xs = (idx % w).astype(np.int32)
    ys = (idx // w).astype(np.int32)
    for a in (idx, idxf, xs, ys):
        a.setflags(write=False)
    return idx, idxf, xs, ys, bits


@lru_cache(maxsize=16)
def _pair_offsets(h: int, w: int, conn8: bool) -> tuple[tuple[int, np.ndarray], ...]:
    """Flat offsets of neighbour pairs (E, S and, for 8-connectivity, SE, SW) with validity masks."""
    n = h * w
    x = np.arange(n) % w
    cand = [(1, lambda m: x[:m] < w - 1), (w, lambda m: np.ones(m, bool))]
    if conn8:
        cand += [(w + 1, lambda m: x[:m] < w - 1), (w - 1, lambda m: x[:m] > 0)]
    out = []
    for d, mk in cand:
        if 0 < d < n:
            v = mk(n - d)
            if v.any():
                v.setflags(write=False)
                out.append((d, v))
    return tuple(out)


def _components_tree(img: np.ndarray, conn8: bool, windows: bool):
    """Merge tree of the upper level sets ``img > M`` (8- or 4-connected) of a uint8 image.

    Returns a :class:`_Tree`: node ``n`` is a component of ``img > M`` for ``M`` in
    ``[parent_w[n], node_w[n] - 1]``; leaf tables ``tabs[:, g, v]`` hold ``min x, min y, -max x,
    -max y`` of the group's pixels with ``img >= v`` and ``sums[:, g, M]`` (only with ``windows``)
    ``2*area`` and ``4*Euler number`` charged to the group at ``M``; ``leaf0`` is the leaf holding
    pixel 0.
    """
    h, w = img.shape
    n = h * w
    nv = int(img.max()) + 1
    idx, idxf, xs, ys, bits = _grid(h, w)
    flat = _buf("flat", (n,), np.int64)
    flat[:] = img.ravel()
    # 1. steepest ascent under the strict order (value, 7x7 sum, index): any strict order is valid
    #    (values never decrease along a path); the local sum steers flat zones towards their higher
    #    surroundings so that they do not split into many basins. float64 holds the key exactly.
    local = cv2.boxFilter(img, cv2.CV_32F, (7, 7), dst=_buf("local", (h, w), np.float32),
                          normalize=False, borderType=cv2.BORDER_REPLICATE)
    k32 = _buf("k32", (h, w), np.float32)
    np.multiply(img, np.float32(1 << _SMOOTH_BITS), out=k32)
    k32 += local  # exact in float32 (< 2**22)
    key = _buf("key", (h, w), np.float64)
    key[...] = k32
    key *= float(1 << bits)
    key += idxf
    kern = _K3 if conn8 else _KX
    dil = cv2.dilate(key, kern, dst=_buf("dil", (h, w), np.float64))
    nxt = _buf("nxt", (n,), np.int64)
    nxt[:] = dil.ravel()
    np.bitwise_and(nxt, (1 << bits) - 1, out=nxt)
    nxt2 = _buf("nxt2", (n,), np.int64)
    while True:
        np.take(nxt, nxt, out=nxt2)
        if np.array_equal(nxt2, nxt):
            break
        nxt, nxt2 = nxt2, nxt
    roots = np.flatnonzero(np.equal(nxt, idx, out=_buf("isroot", (n,), bool)))
    k = roots.size
    rank = _buf("rank", (n,), np.int64)
    rank[roots] = np.arange(k)
    peak = flat[roots]
    # 2. basin adjacency with merge level min(img_p, img_q), max per basin pair (basins are named by
    #    their root pixel here; ranks are looked up only on the boundary)
    pa, pb, pw = [], [], []
    for d, valid in _pair_offsets(h, w, conn8):
        ne = np.not_equal(nxt[:-d], nxt[d:], out=_buf("ne", (n - d,), bool))
        pos = np.flatnonzero(np.logical_and(ne, valid, out=ne))
        if pos.size:
            a = rank[nxt[pos]]
            b = rank[nxt[pos + d]]
            pa.append(np.minimum(a, b))
            pb.append(np.maximum(a, b))
            pw.append(np.minimum(flat[pos], flat[pos + d]))
    if pa:
        lo = np.concatenate(pa).astype(np.int64)
        hi = np.concatenate(pb).astype(np.int64)
        wts = np.concatenate(pw)
        pair = lo * k + hi
        if k * k <= 65_536:
            dense = np.full(k * k, -1, np.int64)
            np.maximum.at(dense, pair, wts)
            pair = np.flatnonzero(dense >= 0)
            wts = dense[pair]
        else:
            # sort by (pair, weight): the last entry of each pair carries its largest weight
            key = np.sort(pair * 256 + wts)
            last = np.ones(key.size, bool)
            last[:-1] = (key[1:] >> 8) != (key[:-1] >> 8)
            pair, wts = key[last] >> 8, key[last] & 255
        ea, eb = pair // k, pair % k
    else:
        ea = eb = wts = np.zeros(0, np.int64)
    # 3. a basin that meets a higher basin at its own peak is never a separate component: absorb it
    #    into ONE such neighbour (absorbing into several would merge those neighbours too early)
    order_key = peak * k + np.arange(k)
    imm = wts == np.minimum(peak[ea], peak[eb])
    ia, ib = ea[imm], eb[imm]
    lower = np.where(order_key[ia] < order_key[ib], ia, ib)
    upper = np.where(order_key[ia] < order_key[ib], ib, ia)
    best = np.full(k, -1, np.int64)
    np.maximum.at(best, lower, order_key[upper])
    comp = np.where(best >= 0, best % max(k, 1), np.arange(k))
    while True:
        new = comp[comp]
        if np.array_equal(new, comp):
            break
        comp = new
    used = np.zeros(ea.size, bool)
    used[np.flatnonzero(imm)[best[lower] == order_key[upper]]] = True
    _, gid = np.unique(comp, return_inverse=True)
    kg = int(gid.max()) + 1
    gpeak = np.full(kg, -1, np.int64)
    np.maximum.at(gpeak, gid, peak)
    ga, gb, gw = gid[ea[~used]], gid[eb[~used]], wts[~used]
    keep = ga != gb
    ga, gb, gw = ga[keep], gb[keep], gw[keep]
    rank[roots] = gid  # root pixel -> group
    glab = np.take(rank, nxt, out=_buf("glab", (n,), np.int64))
    # 4. merge tree over groups (Kruskal, decreasing merge level)
    nodes_w = gpeak.tolist()
    children: list[tuple[int, int]] = []
    parent_uf = list(range(kg))
    node_of = list(range(kg))
    # leaves of each node are kept contiguous: a linked list per union-find root
    head = list(range(kg))
    tail = list(range(kg))
    next_leaf = [-1] * kg
    node_head = list(range(kg))
    node_tail = list(range(kg))

    def find(x: int) -> int:
        while parent_uf[x] != x:
            parent_uf[x] = parent_uf[parent_uf[x]]
            x = parent_uf[x]
        return x

    if gw.size:
        order = np.argsort(-gw, kind="stable")
        for ai, bi, wi in zip(ga[order].tolist(), gb[order].tolist(), gw[order].tolist()):
            ra, rb = find(ai), find(bi)
            if ra == rb:
                continue
            nodes_w.append(wi)
            children.append((node_of[ra], node_of[rb]))
            parent_uf[rb] = ra
            node_of[ra] = len(nodes_w) - 1
            next_leaf[tail[ra]] = head[rb]
            tail[ra] = tail[rb]
            node_head.append(head[ra])
            node_tail.append(tail[ra])
    nn = len(nodes_w)
    node_w = np.asarray(nodes_w, np.int64)
    parent_w = np.zeros(nn, np.int64)
    node_parent = np.full(nn, -1, np.int64)
    for j, (c1, c2) in enumerate(children):
        parent_w[c1] = parent_w[c2] = node_w[kg + j]
        node_parent[c1] = node_parent[c2] = kg + j
    leaf_order = []
    for r in range(kg):
        if parent_uf[r] == r:
            x = head[r]
            while x >= 0:
                leaf_order.append(x)
                x = next_leaf[x]
    leaf_order_a = np.asarray(leaf_order, np.int64)
    pos = np.empty(kg, np.int64)
    pos[leaf_order_a] = np.arange(kg)
    span = np.stack([pos[np.asarray(node_head)], pos[np.asarray(node_tail)] + 1])
    # 5. per group and value v: bbox of pixels with img >= v; window sums as functions of M
    nt = nv + 1
    gkey = np.multiply(glab, nt, out=_buf("gkey", (n,), np.int64))
    gkey += flat
    nb = kg * nt
    big = np.iinfo(np.int32).max
    tmin_x = np.full(nb, big, np.int32)
    tmin_y = np.full(nb, big, np.int32)
    tmax_x = np.full(nb, -1, np.int32)
    tmax_y = np.full(nb, -1, np.int32)
    np.minimum.at(tmin_x, gkey, xs)
    np.maximum.at(tmax_x, gkey, xs)
    np.minimum.at(tmin_y, gkey, ys)
    np.maximum.at(tmax_y, gkey, ys)
    tabs = np.stack([tmin_x, tmin_y, -tmax_x, -tmax_y]).reshape(4, kg, nt)
    tabs = np.minimum.accumulate(tabs[:, :, ::-1], axis=2)[:, :, ::-1]
    sums = None
    if windows:
        # area2 <= 2 * #windows < 2**sh and |euler4| <= 4 * #windows: pack both in one float64 sum
        # when exact (images up to about 16 Mpixels), else use two sums
        sh = int(2 * (h + 1) * (w + 1)).bit_length()
        packed = _window_weights(img)
        if 2 * sh + 4 <= 52:
            wts64 = cv2.LUT(packed, _packed_lut(sh), dst=_buf("wts64", packed.shape, np.float64))
            hist = np.bincount(gkey, weights=wts64.ravel(), minlength=nb)
            hist = np.rint(hist).astype(np.int64)
            suf = hist.reshape(kg, nt)[:, ::-1].cumsum(axis=1)[:, ::-1]
            eul = (suf + (1 << (sh - 1))) >> sh
            area = suf - (eul << sh)
        else:
            p64 = packed.ravel().astype(np.int64)
            area = np.rint(np.bincount(gkey, weights=(p64 & 7).astype(np.float64), minlength=nb))
            eul = np.rint(np.bincount(gkey, weights=((p64 >> 3) - 12).astype(np.float64),
                                      minlength=nb))
            area = area.astype(np.int64).reshape(kg, nt)[:, ::-1].cumsum(axis=1)[:, ::-1]
            eul = eul.astype(np.int64).reshape(kg, nt)[:, ::-1].cumsum(axis=1)[:, ::-1]
        # S[g, M] = sum over v > M of hist[g, v]
        zero = np.zeros((kg, 1), np.int64)
        sums = np.stack([np.concatenate([area[:, 1:], zero], axis=1),
                         np.concatenate([eul[:, 1:], zero], axis=1)])
    return _Tree(node_w, parent_w, node_parent, tabs, sums, leaf_order_a, span, int(glab[0]))


class _Tree:
    """Merge tree of :func:`_components_tree`; node values come from contiguous leaf ranges."""

    def __init__(self, node_w, parent_w, node_parent, tabs, sums, leaf_order, span, leaf0):
        self.node_w, self.parent_w, self.node_parent = node_w, parent_w, node_parent
        self.tabs, self.sums, self.leaf_order, self.span, self.leaf0 = (tabs, sums, leaf_order, span,
                                                                        leaf0)

    def values(self, nodes: np.ndarray, col_tab: np.ndarray, col_sum: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per (node, column) pair: ``(4, n)`` bbox mins and, if asked, ``(2, n)`` window sums."""
        s = self.span[0, nodes]
        cnt = self.span[1, nodes] - s
        off = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        tot = int(cnt.sum())
        within = np.arange(tot) - np.repeat(off, cnt)
        leaves = self.leaf_order[np.repeat(s, cnt) + within]
        tv = np.minimum.reduceat(self.tabs[:, leaves, np.repeat(col_tab, cnt)], off, axis=1)
        sv = None
        if col_sum is not None and self.sums is not None:
            sv = np.add.reduceat(self.sums[:, leaves, np.repeat(col_sum, cnt)], off, axis=1)
        return tv, sv


def _build_window_luts() -> np.ndarray:
    """LUTs (code -> packed weight) for the four window positions.

    ``code`` packs the six pairwise comparisons of a 2x2 window (positions 0..3 = TL, TR, BL, BR;
    bit set when the earlier position is larger, ties count the earlier one as smaller). The packed
    weight is ``area + 8 * (euler + 3)`` with area in {0, 1} and euler in [-3, 3] (see
    :func:`_window_weights`).
    """
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    luts = np.zeros((4, 256), np.uint8)
    for code in range(64):
        after = {pq: (code >> b) & 1 for b, pq in enumerate(pairs)}
        rank = [0, 0, 0, 0]
        for (a, b), c in after.items():
            if c:
                rank[a] += 1
            else:
                rank[b] += 1
        if sorted(rank) != [0, 1, 2, 3]:
            continue
        top = {i for i in range(4) if rank[i] >= 2}
        d = 1 if top in ({0, 3}, {1, 2}) else 0
        for pos in range(4):
            r = rank[pos]
            area = 1 if r < 2 else 0
            eul = 1 if r in (0, 3) else (2 * d - 1 if r == 1 else -1 - 2 * d)
            luts[pos, code] = area + 8 * (eul + 3)
    return luts


_WIN_LUTS = _build_window_luts()


@lru_cache(maxsize=8)
def _packed_lut(sh: int) -> np.ndarray:
    """uint8 packed window weight -> float64 ``area2 + 2**sh * euler4``."""
    p = np.arange(256)
    lut = ((p & 7) + ((p >> 3) - 12) * float(1 << sh)).reshape(1, 256)
    lut.setflags(write=False)
    return lut


def _window_weights(img: np.ndarray) -> np.ndarray:
    """Per-pixel packed window weights ``area2 + 8 * (euler4 + 12)`` (uint8) for grouped suffix sums.

    For a 2x2 window with values sorted ascending w1 <= w2 <= w3 <= w4 (ties by position), at level M
    (foreground ``img > M``): 2*area = [M<w1] + [M<w2]; 4*Euler = [M<w4] - [M<w3] - [M<w2] + [M<w1]
    - 2*d*([M<w3] - [M<w2]) where d says the two largest are diagonal (Gray's bit quads, 8-connected
    foreground). Each term [M<w_k] is charged to the pixel of rank k, which is foreground exactly when
    the term is non-zero, so summing a group's pixels with value > M gives its area and Euler number.
    """
    h, w = img.shape
    p = _buf("wpad", (h + 2, w + 2), np.int16)
    p.fill(-1)
    p[1:-1, 1:-1] = img
    t = (p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:])
    code = _buf("wcode", (h + 1, w + 1), np.uint8)
    code.fill(0)
    cmp = _buf("wcmp", (h + 1, w + 1), np.uint8)
    for bit, (a, b) in enumerate(((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))):
        cv2.compare(t[a], t[b], cv2.CMP_GT, dst=cmp)
        cv2.bitwise_and(cmp, 1 << bit, dst=cmp)
        cv2.bitwise_or(code, cmp, dst=code)
    # sum over the four windows holding each pixel (at most 4 * 49 < 256: uint8 is enough)
    acc = cv2.LUT(code[1:, 1:], _WIN_LUTS[0], dst=_buf("wacc", (h, w), np.uint8))
    tmp = _buf("wtmp", (h, w), np.uint8)
    for pos, view in ((1, code[1:, :-1]), (2, code[:-1, 1:]), (3, code[:-1, :-1])):
        cv2.add(acc, cv2.LUT(view, _WIN_LUTS[pos], dst=tmp), dst=acc)
    return acc


_MAX_TRACED_HOLE_LEVELS = 32


def _hole_boxes(u8: np.ndarray, level: int, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Boxes of the hole contours at ``level`` whose holes lie inside ``crop`` (x0, y0, x1, y1).

    A background region of the crop that does not touch the crop's border is a hole of the whole
    image, and every hole of a component inside the crop is such a region, so tracing the crop gives
    exactly those holes (their contours only involve pixels of the crop).
    """
    h, w = u8.shape
    cx0, cy0, cx1, cy1 = crop
    _, binary = cv2.threshold(u8[cy0:cy1 + 1, cx0:cx1 + 1], int(level), 255, cv2.THRESH_BINARY)
    contours, hier = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    if hier is not None:
        for c, hrow in zip(contours, hier[0]):
            if hrow[3] >= 0:
                x, y, bw, bh = cv2.boundingRect(c)
                x, y = x + cx0, y + cy0
                out.append((x, y, min(x + bw, w - 1), min(y + bh, h - 1)))
    return np.asarray(out, np.int64).reshape(-1, 4)


def _pairs(parent_w: np.ndarray, node_w: np.ndarray, lv: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(node, level index) pairs for nodes alive on level interval ``[lo, hi]``, sorted by level."""
    jlo = np.searchsorted(lv, lo, "left")
    jhi = np.searchsorted(lv, hi, "right")
    cnt = np.maximum(jhi - jlo, 0)
    if keep is not None:
        cnt = np.where(keep, cnt, 0)
    tot = int(cnt.sum())
    pn = np.repeat(np.arange(node_w.size), cnt)
    start = np.repeat(jlo - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt)
    pj = start + np.arange(tot)
    order = np.argsort(pj, kind="stable")
    return pn[order], pj[order]


def level_outcomes(u8: np.ndarray, levels: np.ndarray, gt: np.ndarray,
                   iou_thresholds: np.ndarray | None = None, engine: str = "auto"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box outcomes at each requested level of one quantised map.

    Returns ``(v1_box (n,4) int64, v1_iou (n,) float64, v2_best (n,) float64)``: the V1
    (largest-contour) box, its best IoU over ``gt``, and the best IoU of any contour box (V2) over
    ``gt``. ``levels`` must be sorted ascending and distinct. Results equal
    :func:`contour_boxes_at_level` level by level. With ``iou_thresholds``, ``v2_best`` is only
    guaranteed to compare with each of those thresholds like the exact value. ``engine``:
    ``"numpy"`` (this module), ``"numba"`` (:mod:`camloc.metrics._jit`; ``RuntimeError`` if
    numba is unavailable) or ``"auto"`` (numba when :func:`camloc.metrics._jit.engine` says so).
    """
    from camloc.metrics import _jit

    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    levels = np.asarray(levels, np.int64)
    gt = np.ascontiguousarray(np.asarray(gt, np.int64).reshape(-1, 4))
    if engine == "numpy" or not _jit.fits(u8.shape):
        k = None
    elif engine == "numba":
        k = _jit.kernels()
        if k is None:
            raise RuntimeError("the numba engine is unavailable (numba missing or CAMLOC_NO_NUMBA)")
    else:
        k = _jit.engine(u8.size)
    if k is None:
        return _level_outcomes_numpy(u8, levels, gt, iou_thresholds)
    thr = np.zeros(0) if iou_thresholds is None else np.asarray(iou_thresholds, np.float64)
    b1, i1, v2, fb = k["level_outcomes"](u8, levels, gt, thr, iou_thresholds is None,
                                         _jit.workspace(*u8.shape))
    trace_fallbacks(u8, levels, gt, b1, i1, fb)
    return b1, i1, v2


def trace_fallbacks(u8: np.ndarray, levels: np.ndarray, gt: np.ndarray, v1_box: np.ndarray,
                    v1_iou: np.ndarray, fallback: np.ndarray) -> None:
    """Fill the V1 box and IoU of the levels the compiled engine flagged, with OpenCV's trace."""
    for j in np.flatnonzero(fallback):
        b1, _ = contour_boxes_at_level(u8, int(levels[j]))
        v1_box[j] = b1
        v1_iou[j] = iou_matrix(b1[None], gt).max()


def _level_outcomes_numpy(u8: np.ndarray, levels: np.ndarray, gt: np.ndarray,
                          iou_thresholds: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NumPy/OpenCV engine of :func:`level_outcomes` (the reference for the compiled one).

    Returns ``(v1_box (n,4) int64, v1_iou (n,) float64, v2_best (n,) float64)``: the V1
    (largest-contour) box, its best IoU over ``gt``, and the best IoU of any contour box (V2) over
    ``gt``. ``levels`` must be sorted ascending and distinct. Results equal
    :func:`contour_boxes_at_level` level by level. With ``iou_thresholds``, ``v2_best`` is only
    guaranteed to compare with each of those thresholds like the exact value (hole contours are
    traced only where they could change such a comparison).
    """
    h, w = u8.shape
    levels = np.asarray(levels, np.int64)
    nl = levels.size
    gt = np.asarray(gt, np.int64).reshape(-1, 4)
    v1_box = np.zeros((nl, 4), np.int64)
    v1_iou = np.zeros(nl, np.float64)
    v2_best = np.zeros(nl, np.float64)
    mx = int(u8.max())
    empty = levels >= mx
    if empty.any():
        e_iou = float(iou_matrix(np.zeros((1, 4), np.int64), gt).max())
        v1_iou[empty] = e_iou
        v2_best[empty] = e_iou
    live = np.flatnonzero(~empty)
    if live.size == 0:
        return v1_box, v1_iou, v2_best
    lv = levels[live]
    # components of u > L (8-connected): alive for L in [parent_w, node_w - 1]
    tree = _components_tree(u8, True, True)
    node_w, parent_w = tree.node_w, tree.parent_w
    pn, pj = _pairs(parent_w, node_w, lv, parent_w, node_w - 1)
    tot = pn.size
    pl = lv[pj]
    tv, sv = tree.values(pn, pl + 1, pl)
    x0 = tv[0].astype(np.int64)
    y0 = tv[1].astype(np.int64)
    xm = -tv[2].astype(np.int64)
    ym = -tv[3].astype(np.int64)
    boxes = np.stack([x0, y0, np.minimum(xm + 1, w - 1), np.minimum(ym + 1, h - 1)], axis=1)
    area2 = sv[0]
    holes = sv[1] != 4
    ious = iou_matrix(boxes, gt).max(axis=1)
    starts = np.searchsorted(pj, np.arange(lv.size), "left")
    ncomp = np.diff(np.append(starts, tot))
    best_v2 = np.maximum.reduceat(ious, starts)
    any_holes = np.logical_or.reduceat(holes, starts)
    # holes of u > L = 4-connected components of u <= L that do not reach the image border: upper
    # level sets of 255 - u framed by a 255 border; the frame's component is not a hole
    need = any_holes.copy()
    if need.any() and iou_thresholds is not None:
        # a hole's box lies inside its component's box: IoU <= |box & g| / |g|; holes matter only
        # where some threshold lies in (best of the component boxes, that bound]
        thr = np.asarray(iou_thresholds, np.float64)
        gt_area = ((gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1))[None, :]
        iw = np.maximum(0, np.minimum(boxes[:, None, 2], gt[None, :, 2])
                        - np.maximum(boxes[:, None, 0], gt[None, :, 0]) + 1)
        ih = np.maximum(0, np.minimum(boxes[:, None, 3], gt[None, :, 3])
                        - np.maximum(boxes[:, None, 1], gt[None, :, 1]) + 1)
        bound = np.where(holes, ((iw * ih) / gt_area).max(axis=1), -1.0)
        hb = np.maximum.reduceat(bound, starts)
        need &= ((thr[None, :] > best_v2[:, None]) & (thr[None, :] <= hb[:, None])).any(axis=1)
    need_j = np.flatnonzero(need)
    if 0 < need_j.size <= _MAX_TRACED_HOLE_LEVELS:
        # few levels: trace the holes there, inside the box of the components that have holes
        for j in need_j:
            sel = np.arange(starts[j], starts[j] + ncomp[j])
            sel = sel[holes[sel]]
            crop = (int(x0[sel].min()), int(y0[sel].min()), int(xm[sel].max()), int(ym[sel].max()))
            hbx = _hole_boxes(u8, int(lv[j]), crop)
            if hbx.size:
                best_v2[j] = max(best_v2[j], float(iou_matrix(hbx, gt).max()))
    elif need_j.size:
        # many levels: one component tree of the background gives every hole of every level
        inv = np.full((h + 2, w + 2), 255, np.uint8)
        inv[1:-1, 1:-1] = 255 - u8
        bt = _components_tree(inv, False, False)
        framed = np.zeros(bt.node_w.size, bool)
        nd = bt.leaf0
        while nd >= 0:
            framed[nd] = True
            nd = bt.node_parent[nd]
        # node alive for M = 254 - L in [bpw, bw - 1]  <=>  L in [255 - bw, 254 - bpw]
        hn, hj = _pairs(bt.parent_w, bt.node_w, lv, 255 - bt.node_w, 254 - bt.parent_w, keep=~framed)
        if hn.size:
            hv, _ = bt.values(hn, 255 - lv[hj], None)
            hb = np.stack([hv[0] - 2, hv[1] - 2,
                           np.minimum(-hv[2].astype(np.int64) + 1, w - 1),
                           np.minimum(-hv[3].astype(np.int64) + 1, h - 1)], axis=1)
            hiou = iou_matrix(hb, gt).max(axis=1)
            np.maximum.at(best_v2, hj, np.where(need[hj], hiou, -1.0))
    # V1: largest contour area; a tie between components (OpenCV's order decides) or a component
    # with holes that might be the largest is scored with the straightforward trace
    amax = np.maximum.reduceat(area2, starts)
    is_max = area2 == amax[pj]
    n_at_max = np.add.reduceat(is_max.astype(np.int64), starts)
    first_max = np.minimum.reduceat(np.where(is_max, np.arange(tot), tot), starts)
    fallback = (ncomp > 1) & (n_at_max > 1)
    if any_holes.any():
        # upper bound on 2*area of a component with holes: 2*(w-1)*(h-1) of its pixel-centre box
        ub2 = np.where(holes, 2 * (xm - x0) * (ym - y0), area2)
        other = np.where(is_max & (n_at_max[pj] == 1), -1, ub2)
        fallback |= (ncomp > 1) & (np.maximum.reduceat(other, starts) >= amax)
    v1_box[live] = boxes[first_max]
    v1_iou[live] = ious[first_max]
    v2_best[live] = best_v2
    for j in np.flatnonzero(fallback):
        b1, _ = contour_boxes_at_level(u8, int(lv[j]))
        v1_box[live[j]] = b1
        v1_iou[live[j]] = iou_matrix(b1[None], gt).max()
    return v1_box, v1_iou, v2_best
