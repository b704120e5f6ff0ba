/* camloc maps in the browser: decoding, the paper's box rule, the point lookup, colours.
 *
 * Pure functions (no DOM, except decoding PNG payloads), exposed as window.CamlocMaps. They
 * mirror the library exactly, and tests run them in Chromium against Python:
 *   boxesFromMap   == camloc.localize.boxes_from_map   (same boxes, same order)
 *   toOriginalBoxes == Geometry.to_original_boxes
 *   valuesAt       == camloc.cams.upsample(maps, input_size, "bicubic")[:, y, x]
 */
(function (root) {
  "use strict";

  // ---------------------------------------------------------------- decoding payloads
  function base64Bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // IEEE half -> float (exact; every half is a float32).
  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) return sign * frac * Math.pow(2, -24);
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * Math.pow(2, exp - 15);
  }

  function decodeF16(b64) {
    const bytes = base64Bytes(b64);
    const n = bytes.length >> 1;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = halfToFloat(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    return out;
  }

  function decodeF32(b64) {
    const bytes = base64Bytes(b64);
    return new Float32Array(bytes.buffer, 0, bytes.length >> 2);
  }

  function decodePng(dataUrl, w, h) {
    return new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () {
        const c = document.createElement("canvas");
        c.width = w; c.height = h;
        const ctx = c.getContext("2d", { willReadFrequently: true });
        ctx.drawImage(img, 0, 0);
        const px = ctx.getImageData(0, 0, w, h).data;
        const out = new Float32Array(w * h);
        for (let i = 0; i < w * h; i++) out[i] = Math.fround(px[4 * i] / 255);
        resolve(out);
      };
      img.onerror = function () { reject(new Error("cannot decode a PNG map")); };
      img.src = dataUrl;
    });
  }

  // A maps payload of /api/explain -> Promise of one Float32Array (H*W) per class.
  function decodeMaps(payload) {
    const shape = payload.shape, k = shape[0], h = shape[1], w = shape[2];
    if (payload.encoding === "png") {
      return Promise.all(payload.png.map(function (u) { return decodePng(u, w, h); }));
    }
    const flat = payload.encoding === "f32" ? decodeF32(payload.data) : decodeF16(payload.data);
    const planes = [];
    for (let j = 0; j < k; j++) planes.push(flat.subarray(j * h * w, (j + 1) * h * w));
    return Promise.resolve(planes);
  }

  // ---------------------------------------------------------------- the paper's box rule
  // Pixels strictly above threshold x max (compared in float32, as NumPy compares a float32 map
  // with a Python float); nothing when the max is not positive or the map has a NaN.
  function thresholdMask(map, threshold) {
    const n = map.length;
    const mask = new Uint8Array(n);
    let mx = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = map[i];
      if (v !== v) return mask;  // NaN
      if (v > mx) mx = v;
    }
    if (!(mx > 0)) return mask;
    const thr = Math.fround(threshold * mx);
    for (let i = 0; i < n; i++) mask[i] = map[i] > thr ? 1 : 0;
    return mask;
  }

  // Every 8-connected component: {box: [x0, y0, x1, y1] (continuous edges), area}, largest
  // first; equal areas keep OpenCV's label order (raster order of each component's first 2x2
  // block), which is the library's order.
  function components(mask, w, h) {
    const label = new Int32Array(w * h);
    const stack = new Int32Array(w * h);
    const bw = (w + 1) >> 1;
    const comps = [];
    for (let start = 0; start < w * h; start++) {
      if (!mask[start] || label[start]) continue;
      const id = comps.length + 1;
      let top = 0, area = 0;
      let x0 = w, y0 = h, x1 = -1, y1 = -1, key = Infinity;
      stack[top++] = start; label[start] = id;
      while (top > 0) {
        const p = stack[--top];
        const y = (p / w) | 0, x = p - y * w;
        area++;
        if (x < x0) x0 = x; if (x > x1) x1 = x;
        if (y < y0) y0 = y; if (y > y1) y1 = y;
        const k = (y >> 1) * bw + (x >> 1);
        if (k < key) key = k;
        for (let dy = -1; dy <= 1; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            if (xx < 0 || xx >= w || (dx === 0 && dy === 0)) continue;
            const q = yy * w + xx;
            if (mask[q] && !label[q]) { label[q] = id; stack[top++] = q; }
          }
        }
      }
      comps.push({ box: [x0, y0, x1 + 1, y1 + 1], area: area, key: key });
    }
    comps.sort(function (a, b) { return b.area - a.area || a.key - b.key; });
    return comps;
  }

  // boxes_from_map: multi=false -> [largest box] ([0,0,0,0] when nothing passes);
  // multi=true -> every component's box, largest first (possibly none).
  function boxesFromMap(map, w, h, threshold, multi) {
    const comps = components(thresholdMask(map, threshold), w, h);
    if (multi) return comps.map(function (c) { return c.box; });
    return [comps.length ? comps[0].box : [0, 0, 0, 0]];
  }

  // Geometry.to_original_boxes: input pixels -> original pixels, clipped to the image.
  function toOriginalBoxes(boxes, g, width, height) {
    const clip = function (v, hi) { return Math.min(Math.max(v, 0), hi); };
    return boxes.map(function (b) {
      return [clip((b[0] + g.offset_x) / g.scale_x, width), clip((b[1] + g.offset_y) / g.scale_y, height),
              clip((b[2] + g.offset_x) / g.scale_x, width), clip((b[3] + g.offset_y) / g.scale_y, height)];
    });
  }

  // ---------------------------------------------------------------- point lookup
  // torch's bicubic kernel (A = -0.75), half-pixel centres, edge indices clamped: the 4 taps and
  // weights that output index `dst` of an `nOut` axis reads from an `nIn` axis.
  function cubicTaps(dst, nIn, nOut) {
    const A = -0.75;
    const real = (dst + 0.5) * (nIn / nOut) - 0.5;
    const i0 = Math.floor(real);
    const t = real - i0;
    const c1 = function (x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
    const c2 = function (x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
    const wts = [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
    const idx = [];
    for (let k = -1; k <= 2; k++) idx.push(Math.min(Math.max(i0 + k, 0), nIn - 1));
    return { idx: idx, w: wts };
  }

  // Values of every map at input pixel (px, py), after bicubic upsampling of the (C, h, w) maps
  // to (H, W) -- without upsampling all of them.
  function valuesAt(flat, shape, H, W, px, py) {
    const C = shape[0], h = shape[1], w = shape[2];
    const ty = cubicTaps(py, h, H), tx = cubicTaps(px, w, W);
    const out = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const base = c * h * w;
      let s = 0;
      for (let a = 0; a < 4; a++) {
        const row = base + ty.idx[a] * w;
        let r = 0;
        for (let b = 0; b < 4; b++) r += tx.w[b] * flat[row + tx.idx[b]];
        s += ty.w[a] * r;
      }
      out[c] = s;
    }
    return out;
  }

  // Original-image point (x, y) -> the input pixel under it (null outside the network's view).
  function inputPixel(g, x, y) {
    const xi = Math.floor(x * g.scale_x - g.offset_x), yi = Math.floor(y * g.scale_y - g.offset_y);
    if (xi < 0 || yi < 0 || xi >= g.input_width || yi >= g.input_height) return null;
    return [xi, yi];
  }

  // The `top` classes whose maps are highest at original-image point (x, y): [{id, value}].
  function pointRanking(flat, shape, g, x, y, top) {
    const p = inputPixel(g, x, y);
    if (!p) return [];
    const v = valuesAt(flat, shape, g.input_height, g.input_width, p[0], p[1]);
    const ids = Array.from(v.keys());
    ids.sort(function (a, b) { return v[b] - v[a] || a - b; });
    return ids.slice(0, top).map(function (c) { return { id: c, value: v[c] }; });
  }

  // ---------------------------------------------------------------- colours
  function jet(v) {
    const t = Math.min(Math.max(v, 0), 1);
    const f = function (x) { return Math.round(255 * Math.min(Math.max(1.5 - Math.abs(4 * t - x), 0), 1)); };
    return [f(3), f(2), f(1)];
  }

  // Opacity of a map value: rises with the value from 0 (transparent) to 1 (opaque), the same
  // rule for every pixel, so a zero and a weak value look alike and only strong values cover the
  // photo (a colour alone would make untouched bright photo pixels look like hot spots).
  function heatAlpha(v) {
    const t = Math.min(Math.max(v, 0), 1);
    return t > 0 ? Math.round(255 * Math.sqrt(t)) : 0;
  }

  // An RGBA ImageData-shaped buffer of a normalised map: jet colours, alpha heatAlpha(value)
  // (opaque: every pixel opaque, the raw-map view).
  function heatmapPixels(map, w, h, opaque) {
    const px = new Uint8ClampedArray(w * h * 4);
    for (let i = 0; i < w * h; i++) {
      const v = map[i] === map[i] ? map[i] : 0;  // NaN: as zero
      const c = jet(v);
      px[4 * i] = c[0]; px[4 * i + 1] = c[1]; px[4 * i + 2] = c[2];
      px[4 * i + 3] = opaque ? 255 : heatAlpha(v);
    }
    return px;
  }

  root.CamlocMaps = {
    decodeF16: decodeF16, decodeF32: decodeF32, decodeMaps: decodeMaps, halfToFloat: halfToFloat,
    thresholdMask: thresholdMask, components: components, boxesFromMap: boxesFromMap,
    toOriginalBoxes: toOriginalBoxes, valuesAt: valuesAt, inputPixel: inputPixel,
    pointRanking: pointRanking, jet: jet, heatmapPixels: heatmapPixels, heatAlpha: heatAlpha,
  };
})(typeof window !== "undefined" ? window : this);
