"""numba kernels behind :mod:`camloc.metrics._jit` (imported only through ``_jit.kernels()``).

Everything works on the *class image* of a map: for the requested distinct levels
``lv[0] < ... < lv[n-1]`` (those below the map's maximum), pixel class ``c = #{j : lv[j] < u8}``,
so that ``u8 > lv[j]`` exactly where ``c > j``. The trees below are trees of the class image, and
"level j" means ``lv[j]``. Fewer distinct values than grey levels also means longer runs of equal
pixels, which the tree builders exploit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# neighbour k of a pixel sits at (dx, dy) = _NEIGH[k]; bit k of the "earlier neighbours" masks
_NEIGH = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


def window_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(dA, dE)``: change of ``2*Q4 + Q3`` and of ``Q1 - Q3 - 2*QD`` over the four 2x2 windows that
    hold a pixel when it joins the foreground, indexed by the mask of its neighbours already in it
    (bit k = neighbour ``_NEIGH[k]``)."""
    def f(cells: list[tuple[int, int]], on: set[tuple[int, int]]) -> tuple[int, int]:
        inside = [c for c in cells if c in on]
        if len(inside) == 2:
            (a, b) = inside
            return 0, (-2 if a[0] != b[0] and a[1] != b[1] else 0)
        return {0: (0, 0), 1: (0, 1), 3: (1, -1), 4: (2, 0)}[len(inside)]

    dA = np.zeros(256, np.int32)
    dE = np.zeros(256, np.int32)
    windows = [[(ox + i, oy + j) for j in (0, 1) for i in (0, 1)] for ox in (-1, 0) for oy in (-1, 0)]
    for mask in range(256):
        before = {_NEIGH[k] for k in range(8) if mask >> k & 1}
        after = before | {(0, 0)}
        for cells in windows:
            a0, e0 = f(cells, before)
            a1, e1 = f(cells, after)
            dA[mask] += a1 - a0
            dE[mask] += e1 - e0
    return dA, dE


_DA, _DE = window_tables()
_DX = np.array([d[0] for d in _NEIGH], np.int64)
_DY = np.array([d[1] for d in _NEIGH], np.int64)
_W_BIT = 1 << 3

# node records written by the tree builders (int32 columns)
HI, LO, X0, Y0, X1, Y1, A2, E4 = range(8)
_RING = (0, 1, 2, 4, 7, 6, 5, 3)  # NW, N, NE, E, SE, S, SW, W: consecutive cells are 4-adjacent
_FOUR_BITS = (1, 3, 4, 6)  # N, W, E, S


def _run_tables() -> tuple[np.ndarray, ...]:
    """Per 8-bit mask of earlier neighbours: how many groups they form, and one neighbour of each.

    Earlier neighbours that follow each other around the pixel are 4-adjacent, so they already
    share a set: one find per run around the ring is enough. 8-connected: every run; 4-connected:
    the runs holding an N, W, E or S neighbour (a run of one diagonal cell does not touch the
    pixel), represented by that neighbour."""
    n8 = np.zeros(256, np.int64)
    b8 = np.zeros((256, 4), np.int64)
    n4 = np.zeros(256, np.int64)
    b4 = np.zeros((256, 4), np.int64)
    for mask in range(256):
        on = [mask >> k & 1 for k in _RING]
        runs: list[list[int]] = []
        if all(on):
            runs = [list(_RING)]
        else:
            start = on.index(0)
            for i in range(1, 9):
                k = (start + i) % 8
                if on[k]:
                    if not on[k - 1]:
                        runs.append([])
                    runs[-1].append(_RING[k])
        for run in runs:
            b8[mask, n8[mask]] = run[0]
            n8[mask] += 1
            four = [k for k in run if k in _FOUR_BITS]
            if four:
                b4[mask, n4[mask]] = four[0]
                n4[mask] += 1
    return n8, b8, n4, b4


_N8, _B8, _N4, _B4 = _run_tables()


@njit(cache=True, nogil=True)
def _find(z, x):
    """Root pixel of ``x``'s set (roots hold ``-(set id + 1)``), with path halving."""
    while z[x] >= 0:
        nx = z[x]
        if z[nx] >= 0:
            z[x] = z[nx]
        x = nx
    return x


@njit(cache=True, nogil=True)
def _emit(S, s, lo, nodes, nn):
    nodes[nn, HI] = S[s, 6]
    nodes[nn, LO] = lo
    nodes[nn, X0] = S[s, 0]
    nodes[nn, Y0] = S[s, 1]
    nodes[nn, X1] = S[s, 2]
    nodes[nn, Y1] = S[s, 3]
    nodes[nn, A2] = S[s, 4]
    nodes[nn, E4] = S[s, 5]


@njit(cache=True, nogil=True)
def _store(S, s, x0, y0, x1, y1, a, e, top):
    S[s, 0] = x0
    S[s, 1] = y0
    S[s, 2] = x1
    S[s, 3] = y1
    S[s, 4] = a
    S[s, 5] = e
    S[s, 6] = top


@njit(cache=True, nogil=True)
def _new_set(S, ns, x, y, a, e, c):
    S[ns, 0] = x
    S[ns, 1] = y
    S[ns, 2] = x
    S[ns, 3] = y
    S[ns, 4] = a
    S[ns, 5] = e
    S[ns, 6] = c
    S[ns, 7] = 0


@njit(cache=True, nogil=True)
def _union(zpar, S, r, s, r2, s2, add):
    """Merge sets ``s`` and ``s2`` (root pixels ``r``, ``r2``) by rank: boxes, and with ``add``
    columns 4-5 summed (else column 4 or-ed, column 5 of the merged-away set set to 1). Returns the
    surviving ``(root, set)``."""
    if S[s2, 7] > S[s, 7]:
        r, r2 = r2, r
        s, s2 = s2, s
    elif S[s2, 7] == S[s, 7]:
        S[s, 7] += 1
    zpar[r2] = r
    S[s, 0] = min(S[s, 0], S[s2, 0])
    S[s, 1] = min(S[s, 1], S[s2, 1])
    S[s, 2] = max(S[s, 2], S[s2, 2])
    S[s, 3] = max(S[s, 3], S[s2, 3])
    if add:
        S[s, 4] += S[s2, 4]
        S[s, 5] += S[s2, 5]
    else:
        S[s, 4] = max(S[s, 4], S[s2, 4])
        S[s2, 5] = 1
    return r, s


@njit(cache=True, nogil=True)
def _prepare(C, hp, wp, M, order, start, nclass):
    """Masks and order of the framed class image ``C`` (ring -1, classes ``0 .. nclass - 1``).

    ``M`` gets, per pixel, the 8-bit mask of its neighbours that come before it in decreasing order
    (higher, or equal and earlier in raster order; low byte) and in increasing order (lower, or
    equal and later in raster order; the ring never counts; high byte). ``order`` gets the interior
    pixels by decreasing class, ties in raster order, packed as ``M << 32 | y << 16 | x``;
    ``start[c]`` is where class ``c`` begins (``start[nclass] = n``). Plain counting sort: on
    this kind of data, keeping runs of equal classes in registers costs more in mispredicted
    branches than it saves."""
    n0 = wp + 1
    n1 = (hp - 1) * wp - 1
    c = C[n0:n1]
    out = M[n0:n1]
    nw = C[n0 - wp - 1:n1 - wp - 1]
    nn = C[n0 - wp:n1 - wp]
    ne = C[n0 - wp + 1:n1 - wp + 1]
    ww = C[n0 - 1:n1 - 1]
    ee = C[n0 + 1:n1 + 1]
    sw = C[n0 + wp - 1:n1 + wp - 1]
    ss = C[n0 + wp:n1 + wp]
    se = C[n0 + wp + 1:n1 + wp + 1]
    for i in range(c.size):
        v = c[i]
        up = ((nw[i] >= v) * 1 + (nn[i] >= v) * 2 + (ne[i] >= v) * 4 + (ww[i] >= v) * 8
              + (ee[i] > v) * 16 + (sw[i] > v) * 32 + (ss[i] > v) * 64 + (se[i] > v) * 128)
        lo = (((nw[i] < v) & (nw[i] >= 0)) * 1 + ((nn[i] < v) & (nn[i] >= 0)) * 2
              + ((ne[i] < v) & (ne[i] >= 0)) * 4 + ((ww[i] < v) & (ww[i] >= 0)) * 8
              + ((ee[i] <= v) & (ee[i] >= 0)) * 16 + ((sw[i] <= v) & (sw[i] >= 0)) * 32
              + ((ss[i] <= v) & (ss[i] >= 0)) * 64 + ((se[i] <= v) & (se[i] >= 0)) * 128)
        out[i] = up + lo * 256
    hist = np.zeros(nclass, np.int64)
    for y in range(1, hp - 1):
        base = y * wp
        for x in range(1, wp - 1):
            hist[C[base + x]] += 1
    acc = 0
    for v in range(nclass - 1, -1, -1):
        start[v] = acc
        acc += hist[v]
    start[nclass] = acc
    pos = start[:nclass].copy()
    for y in range(1, hp - 1):
        base = y * wp
        for x in range(1, wp - 1):
            v = C[base + x]
            order[pos[v]] = (np.int64(M[base + x]) << 32) | (y << 16) | x
            pos[v] += 1
    return acc


@njit(cache=True, nogil=True)
def _upper_tree(order, start, nclass, wp, zpar, S, nodes):
    """Component tree of the upper level sets (8-connected) of the class image.

    Returns the number of node records written to ``nodes``: ``HI`` (the node's class: it is the
    component of ``c > j`` for ``j`` in ``LO .. HI - 1``), ``LO`` (its parent's class, -1 for the
    root), the box ``X0, Y0, X1, Y1`` (padded coordinates, inclusive), ``A2 = 2*Q4 + Q3`` and
    ``E4 = Q1 - Q3 - 2*QD`` over its 2x2 windows (Gray's bit quads: ``A2 / 2`` is the
    ``contourArea`` of a component without holes, ``E4 / 4`` its Euler number).

    Pixels join in decreasing order, each pointing straight at its set's root (union by rank), so
    finds are short; a pixel right after its west neighbour, with no other group of earlier
    neighbours, reuses that neighbour's set without a find. A set keeps box, sums, the lowest class
    joined so far (column 6) and its rank (7); a set whose lowest class is above a joining pixel's
    is a finished component and is written out first."""
    off = np.empty(8, np.int64)
    for k in range(8):
        off[k] = _DY[k] * wp + _DX[k]
    ns = 0
    nn = 0
    prev = -2
    r = 0
    # the current set's attributes live in locals (cs: its id, -1 for none); S[cs] is written back
    # only before another set is touched, so pixels joining the same set cost no memory traffic
    cs = -1
    cx0 = cy0 = cx1 = cy1 = ca = ce = ctop = 0
    for cl in range(nclass - 1, -1, -1):
        i0 = start[cl]
        i1 = start[cl - 1] if cl > 0 else start[nclass]
        for i in range(i0, i1):
            code = order[i]
            x = code & 0xFFFF
            y = (code >> 16) & 0xFFFF
            mask = (code >> 32) & 0xFF
            p = y * wp + x
            nr = _N8[mask]
            if nr == 1 and prev == p - 1 and ctop == cl and mask & _W_BIT:
                # continues the run of its west neighbour: same set and row (x0, y0, y1 hold)
                if x > cx1:
                    cx1 = x
                ca += _DA[mask]
                ce += _DE[mask]
                zpar[p] = r
                prev = p
                continue
            prev = p
            if nr == 0:  # a new regional maximum
                if cs >= 0:
                    _store(S, cs, cx0, cy0, cx1, cy1, ca, ce, ctop)
                cs = ns
                ns += 1
                r = p
                zpar[p] = -(cs + 1)
                cx0 = cx1 = x
                cy0 = cy1 = y
                ca = _DA[mask]
                ce = _DE[mask]
                ctop = cl
                S[cs, 7] = 0
                continue
            r = _find(zpar, p + off[_B8[mask, 0]])
            s = -zpar[r] - 1
            if s != cs:
                if cs >= 0:
                    _store(S, cs, cx0, cy0, cx1, cy1, ca, ce, ctop)
                cs = s
                cx0, cy0, cx1, cy1 = S[s, 0], S[s, 1], S[s, 2], S[s, 3]
                ca, ce, ctop = S[s, 4], S[s, 5], S[s, 6]
            if ctop > cl:  # finished: the component of c > j for j in cl .. ctop - 1
                nodes[nn, HI] = ctop
                nodes[nn, LO] = cl
                nodes[nn, X0] = cx0
                nodes[nn, Y0] = cy0
                nodes[nn, X1] = cx1
                nodes[nn, Y1] = cy1
                nodes[nn, A2] = ca
                nodes[nn, E4] = ce
                nn += 1
                ctop = cl
            for j in range(1, nr):
                r2 = _find(zpar, p + off[_B8[mask, j]])
                if r2 == r:
                    continue
                s2 = -zpar[r2] - 1
                if S[s2, 6] > cl:
                    _emit(S, s2, cl, nodes, nn)
                    nn += 1
                _store(S, cs, cx0, cy0, cx1, cy1, ca, ce, ctop)
                r, cs = _union(zpar, S, r, cs, r2, s2, True)
                S[cs, 6] = cl
                cx0, cy0, cx1, cy1 = S[cs, 0], S[cs, 1], S[cs, 2], S[cs, 3]
                ca, ce, ctop = S[cs, 4], S[cs, 5], S[cs, 6]
            if x < cx0:
                cx0 = x
            if y < cy0:
                cy0 = y
            if x > cx1:
                cx1 = x
            if y > cy1:
                cy1 = y
            ca += _DA[mask]
            ce += _DE[mask]
            zpar[p] = r
    if cs >= 0:
        _store(S, cs, cx0, cy0, cx1, cy1, ca, ce, ctop)
    last = order[start[nclass] - 1]
    root = _find(zpar, ((last >> 16) & 0xFFFF) * wp + (last & 0xFFFF))
    _emit(S, -zpar[root] - 1, -1, nodes, nn)  # everything has joined: the root
    return nn + 1


@njit(cache=True, nogil=True)
def _lower_tree(order, start, nclass, hp, wp, jmax, zpar, S, nodes):
    """4-connected components of the lower level sets ``c <= j`` for ``j <= jmax`` (the
    background; holes are those that do not reach the image border), joining pixels in increasing
    order up to class ``jmax``. Returns the number of records: alive for ``j`` in ``HI .. LO - 1``
    (``HI``: the highest class joined), the box, and ``A2 = 1`` when it reaches the border."""
    off = np.empty(8, np.int64)
    for k in range(8):
        off[k] = _DY[k] * wp + _DX[k]
    ns = 0
    nn = 0
    for cl in range(0, min(jmax, nclass - 1) + 1):
        i0 = start[cl]
        i1 = start[cl - 1] if cl > 0 else start[nclass]
        for i in range(i1 - 1, i0 - 1, -1):
            code = order[i]
            x = code & 0xFFFF
            y = (code >> 16) & 0xFFFF
            mask = (code >> 40) & 0xFF
            p = y * wp + x
            edge = 1 if (x == 1 or y == 1 or x == wp - 2 or y == hp - 2) else 0
            nr = _N4[mask]
            if nr == 0:
                _new_set(S, ns, x, y, edge, 0, cl)
                zpar[p] = -(ns + 1)
                ns += 1
                continue
            r = _find(zpar, p + off[_B4[mask, 0]])
            s = -zpar[r] - 1
            if S[s, 6] < cl:
                _emit(S, s, cl, nodes, nn)
                nn += 1
                S[s, 6] = cl
            for j in range(1, nr):
                r2 = _find(zpar, p + off[_B4[mask, j]])
                if r2 == r:
                    continue
                s2 = -zpar[r2] - 1
                if S[s2, 6] < cl:
                    _emit(S, s2, cl, nodes, nn)
                    nn += 1
                r, s = _union(zpar, S, r, s, r2, s2, False)
                S[s, 6] = cl
            if x < S[s, 0]:
                S[s, 0] = x
            if y < S[s, 1]:
                S[s, 1] = y
            if x > S[s, 2]:
                S[s, 2] = x
            if y > S[s, 3]:
                S[s, 3] = y
            if edge:
                S[s, 4] = 1
            zpar[p] = r
    for s in range(ns):
        if S[s, 5] == 0:  # still a root
            _emit(S, s, jmax + 1, nodes, nn)
            nn += 1
    return nn


@njit(cache=True, nogil=True)
def _iou(ax0, ay0, ax1, ay1, gt, g):
    iw = min(ax1, gt[g, 2]) - max(ax0, gt[g, 0]) + 1
    ih = min(ay1, gt[g, 3]) - max(ay0, gt[g, 1]) + 1
    if iw < 0:
        iw = 0
    if ih < 0:
        ih = 0
    inter = iw * ih
    den = ((ax1 - ax0 + 1) * (ay1 - ay0 + 1) + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
           - inter)
    if den <= 0:
        return 0.0
    return inter / den


@njit(cache=True, nogil=True)
def _best_iou(x0, y0, x1, y1, gt):
    best = 0.0
    for g in range(gt.shape[0]):
        v = _iou(x0, y0, x1, y1, gt, g)
        if v > best:
            best = v
    return best


@njit(cache=True, nogil=True)
def scan_map(m):
    """``(min, max, has_nan)`` of one float map in one pass."""
    lo = np.inf
    hi = -np.inf
    nan = False
    for v in m.ravel():
        if v != v:
            nan = True
        else:
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    return float(lo), float(hi), nan


@njit(cache=True, nogil=True)
def map_outcomes(m, thr, gt, dthr, exact, ws):
    """Box outcomes of one map ``m`` (``H x W`` floats in [0, 1]) at every threshold of ``thr``.

    Returns ``(inv, lv, v1_box, v1_iou, v2_best, fallback, u8)``: threshold k uses distinct level
    ``lv[inv[k]]`` (``int(thr[k] * max(u8))``); the rest is :func:`level_outcomes`'s, per distinct
    level, and ``u8`` (``(float64(m) * 255).astype(uint8)``) is a view of the workspace ``ws``
    (:func:`camloc.metrics._jit.workspace`).
    """
    h, w = m.shape
    u8 = ws[7][:h, :w]
    for y in range(h):
        row = m[y]
        urow = u8[y]
        for x in range(w):
            urow[x] = np.uint8(np.int32(row[x] * 255.0))
    mx = 0
    for y in range(h):
        mx = max(mx, int(u8[y].max()))
    nt = thr.size
    inv = np.empty(nt, np.int64)
    lv_all = np.empty(nt, np.int64)
    nl = 0
    for k in range(nt):
        L = int(thr[k] * np.float64(mx))
        if nl == 0 or L != lv_all[nl - 1]:
            lv_all[nl] = L
            nl += 1
        inv[k] = nl - 1
    lv = lv_all[:nl].copy()
    b, i1, v2, fb = _outcomes(u8, mx, lv, gt, dthr, exact, ws)
    return inv, lv, b, i1, v2, fb, u8


@njit(cache=True, nogil=True)
def level_outcomes(u8, lv, gt, dthr, exact, ws):
    """Box outcomes of a quantised map ``u8`` at the ascending distinct levels ``lv``.

    Returns ``(v1_box (n, 4), v1_iou (n,), v2_best (n,), fallback (n,))``: the V1 box and its best
    IoU over ``gt`` (unset where ``fallback``: the caller traces that level with OpenCV), and the
    best V2 IoU (exact where ``exact``, else exact in its comparisons with ``dthr``)."""
    h, w = u8.shape
    mx = 0
    for y in range(h):
        mx = max(mx, int(u8[y].max()))
    return _outcomes(u8, mx, lv, gt, dthr, exact, ws)


@njit(cache=True, nogil=True)
def _outcomes(u8, mx, lv, gt, dthr, exact, ws):
    h, w = u8.shape
    hp = h + 2
    wp = w + 2
    order, zpar, S, nodes, C, M = ws[0], ws[1], ws[2], ws[3], ws[5], ws[6]
    nl = lv.size
    v1_box = np.zeros((nl, 4), np.int64)
    v1_iou = np.zeros(nl, np.float64)
    v2 = np.zeros(nl, np.float64)
    fallback = np.zeros(nl, np.bool_)
    e_iou = _best_iou(0, 0, 0, 0, gt)
    nlive = 0
    for j in range(nl):
        if lv[j] >= mx:  # empty foreground: the box [0, 0, 0, 0]
            v1_iou[j] = e_iou
            v2[j] = e_iou
        else:
            nlive = j + 1
    if nlive == 0:
        return v1_box, v1_iou, v2, fallback
    # class image: c = number of live levels below the value (framed by -1)
    cls = np.empty(256, np.int16)
    j = 0
    for val in range(256):
        while j < nlive and lv[j] < val:
            j += 1
        cls[val] = j
    nclass = nlive + 1
    for x in range(wp):
        C[x] = -1
        C[(hp - 1) * wp + x] = -1
    for y in range(h):
        base = (y + 1) * wp
        C[base] = -1
        C[base + wp - 1] = -1
        row = C[base + 1:base + 1 + w]
        urow = u8[y]
        for x in range(w):
            row[x] = cls[urow[x]]
    start = np.empty(nclass + 1, np.int64)
    _prepare(C, hp, wp, M, order, start, nclass)
    nn = _upper_tree(order, start, nclass, wp, zpar, S, nodes)
    ncomp = np.zeros(nlive, np.int64)
    amax = np.full(nlive, -1, np.int64)
    cnt = np.zeros(nlive, np.int64)
    arg = np.full(nlive, -1, np.int64)
    v2c = np.zeros(nlive, np.float64)
    anyh = np.zeros(nlive, np.bool_)
    node_iou = np.zeros(nn, np.float64)
    any_holes = False
    for t in range(nn):
        hi = min(nodes[t, HI], nlive)
        lo = max(nodes[t, LO], 0)
        if lo >= hi:
            continue
        # contour box: x1 = min(max x + 1, W - 1); padded coordinates are one more
        iou = _best_iou(nodes[t, X0] - 1, nodes[t, Y0] - 1, min(nodes[t, X1], w - 1),
                        min(nodes[t, Y1], h - 1), gt)
        node_iou[t] = iou
        a = nodes[t, A2]
        holed = nodes[t, E4] != 4
        if holed:
            any_holes = True
        for j in range(lo, hi):
            ncomp[j] += 1
            if a > amax[j]:
                amax[j] = a
                cnt[j] = 1
                arg[j] = t
            elif a == amax[j]:
                cnt[j] += 1
            if iou > v2c[j]:
                v2c[j] = iou
            if holed:
                anyh[j] = True
    for j in range(nlive):
        if cnt[j] > 1:
            fallback[j] = True  # equal areas: OpenCV's contour order decides
    if any_holes:
        _hole_checks(h, w, nlive, gt, dthr, exact, nodes, nn, ncomp, amax, cnt, arg, v2c, anyh,
                     fallback, start, nclass, ws)
    for j in range(nlive):
        v2[j] = v2c[j]
        if not fallback[j]:
            t = arg[j]
            v1_box[j, 0] = nodes[t, X0] - 1
            v1_box[j, 1] = nodes[t, Y0] - 1
            v1_box[j, 2] = min(nodes[t, X1], w - 1)
            v1_box[j, 3] = min(nodes[t, Y1], h - 1)
            v1_iou[j] = node_iou[t]
    return v1_box, v1_iou, v2, fallback


@njit(cache=True, nogil=True)
def _hole_checks(h, w, nlive, gt, dthr, exact, nodes, nn, ncomp, amax, cnt, arg, v2c, anyh,
                 fallback, start, nclass, ws):
    """Levels with components that have holes: flag V1 levels where such a component might be the
    largest (its outer contour's area is above ``A2 / 2`` but at most that of its pixel-centre
    box), and add the hole boxes to V2 where they could change a comparison with ``dthr`` (or
    everywhere if ``exact``)."""
    hb = np.full(nlive, -1.0)
    for t in range(nn):
        if nodes[t, E4] == 4:
            continue
        hi = min(nodes[t, HI], nlive)
        j0 = max(nodes[t, LO], 0)
        if j0 >= hi:
            continue
        bx0 = nodes[t, X0] - 1
        by0 = nodes[t, Y0] - 1
        bx1 = min(nodes[t, X1], w - 1)
        by1 = min(nodes[t, Y1], h - 1)
        ub2 = 2 * (nodes[t, X1] - nodes[t, X0]) * (nodes[t, Y1] - nodes[t, Y0])
        # a hole's box lies inside its component's box: its IoU is at most |box & g| / |g|
        bound = 0.0
        for g in range(gt.shape[0]):
            iw = min(bx1, gt[g, 2]) - max(bx0, gt[g, 0]) + 1
            ih = min(by1, gt[g, 3]) - max(by0, gt[g, 1]) + 1
            if iw > 0 and ih > 0:
                b = (iw * ih) / ((gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1))
                if b > bound:
                    bound = b
        for j in range(j0, hi):
            if ncomp[j] > 1 and not (arg[j] == t and cnt[j] == 1) and ub2 >= amax[j]:
                fallback[j] = True
            if bound > hb[j]:
                hb[j] = bound
    need = np.zeros(nlive, np.bool_)
    jmax = -1
    for j in range(nlive):
        if anyh[j]:
            if exact:
                need[j] = True
            else:
                for d in range(dthr.size):
                    if v2c[j] < dthr[d] and dthr[d] <= hb[j]:
                        need[j] = True
            if need[j]:
                jmax = j
    if jmax < 0:
        return
    # holes at level j: 4-connected components of c <= j that do not reach the border; a hole
    # contour's box is the hole's box grown by one pixel (clipped to the image)
    order, zpar, S, hnodes = ws[0], ws[1], ws[2], ws[4]
    nh = _lower_tree(order, start, nclass, h + 2, w + 2, jmax, zpar, S, hnodes)
    for t in range(nh):
        if hnodes[t, A2]:
            continue  # reaches the border: not a hole
        hi = min(hnodes[t, LO], nlive)
        if hnodes[t, HI] >= hi:
            continue
        iou = _best_iou(hnodes[t, X0] - 2, hnodes[t, Y0] - 2, min(hnodes[t, X1] + 1, w - 1),
                        min(hnodes[t, Y1] + 1, h - 1), gt)
        for j in range(hnodes[t, HI], hi):
            if need[j] and iou > v2c[j]:
                v2c[j] = iou


@njit(cache=True, nogil=True)
def add_counts(inv, v1_iou, v2, dthr, v1c, v2c, t1c, t5c, top1, top5):
    """Add one map's outcomes to the per-threshold counts: threshold k uses level ``inv[k]``; V1
    is correct at IoU >= 0.5 (also counted for Top-1 / Top-5 when ``top1`` / ``top5``), V2 at each
    of ``dthr``."""
    for k in range(inv.size):
        j = inv[k]
        if v1_iou[j] >= 0.5:
            v1c[k] += 1
            if top1:
                t1c[k] += 1
            if top5:
                t5c[k] += 1
        for d in range(dthr.size):
            if v2[j] >= dthr[d]:
                v2c[d, k] += 1


@njit(cache=True, nogil=True)
def histogram_fg_bg(m, mask, edges, inv_step, hist_fg, hist_bg):
    """Add ``np.histogram``-style counts of the map values over ``edges`` (bins ``[e_k, e_k+1)``, the
    last one closed) to ``hist_fg`` where ``mask == 1`` and to ``hist_bg`` where ``mask == 0``.
    ``inv_step`` guesses the bin; the edges decide it, so counts are exact."""
    nb = edges.size - 1
    lo = edges[0]
    top = edges[nb]
    mf = m.ravel()
    kf = mask.ravel()
    for i in range(mf.size):
        g = kf[i]
        if g != 0 and g != 1:
            continue
        v = np.float64(mf[i])
        if not (v >= lo and v <= top):
            continue
        k = int((v - lo) * inv_step)
        if k > nb - 1:
            k = nb - 1
        if k < 0:
            k = 0
        while k > 0 and v < edges[k]:
            k -= 1
        while k < nb - 1 and v >= edges[k + 1]:
            k += 1
        if g == 1:
            hist_fg[k] += 1
        else:
            hist_bg[k] += 1
