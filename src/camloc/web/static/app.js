/* camloc explain page: upload an image, see classes, maps and boxes; boxes follow the threshold
 * slider in the browser (CamlocMaps.boxesFromMap on the map sent once); a click on the image lists
 * the classes whose maps are highest there (from every class's map, sent once per image). */
(function () {
  "use strict";
  const M = window.CamlocMaps;
  const $ = function (id) { return document.getElementById(id); };
  const MAX_CANVAS_SIDE = 1600;
  const MAX_TOP_K = 50;

  const state = {
    health: null, methods: [], classNames: [],
    file: null, fileName: "", image: null,    // the current upload and its decoded <img>
    response: null,                            // the latest /api/explain answer (classes, geometry)
    entries: [],                               // [{id, name, prob, map}] shown in the class list
    selected: 0,                               // index into entries
    all: null,                                 // {flat: Float32Array, shape: [C, h, w]} or null
    point: null,                               // {x, y, ranking}
    heat: null,                                // offscreen canvas of the selected map
    requestId: 0,
    layers: [],                                // /api/methods' layers (with refused_by)
    job: null,                                 // the slow request being followed: {id, timer}
    hashClasses: null,                         // classes named in the address, for the next picture
  };

  // ---------------------------------------------------------------- small helpers
  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.classList.toggle("error", !!isError);
  }

  async function api(path, options) {
    const resp = await fetch(path, options);
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const reason = body && body.error ? body.error : resp.status + " " + resp.statusText;
      throw new Error(reason);
    }
    return body;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A list entry operable by mouse and keyboard: a <button> (Tab, Enter, Space) inside the <li>.
  function pickItem(attrs, parts, onPick, title) {
    const li = el("li", attrs);
    const b = el("button", { type: "button", class: "pick" });
    if (title) b.title = title;
    for (const p of parts) b.appendChild(p);
    b.addEventListener("click", onPick);
    li.appendChild(b);
    return li;
  }

  function fmtBox(b) { return "[" + b.map(function (v) { return v.toFixed(1); }).join(", ") + "]"; }

  function methodMeta(name) {
    return state.methods.find(function (m) { return m.name === name; }) || null;
  }

  function settings() {
    return {
      method: $("method").value, layer: $("layer").value, tta: $("tta").value,
      localizer: !$("localizer-row").hidden && $("localizer").checked,
      topK: Math.max(1, Math.min(MAX_TOP_K, parseInt($("topk").value, 10) || 5)),
      threshold: parseFloat($("threshold").value), multi: $("multi").checked,
      opacity: parseFloat($("opacity").value),
    };
  }

  function download(blob, name) {
    const a = el("a", { href: URL.createObjectURL(blob), download: name });
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // ---------------------------------------------------------------- start-up
  async function init() {
    try {
      const [health, methods, classes] = await Promise.all([
        api("/api/health"), api("/api/methods"), api("/api/classes")]);
      state.health = health;
      state.methods = methods.methods;
      state.classNames = classes.classes.map(function (c) { return c.name; });
      $("model-info").textContent = health.model + " on " + health.device +
        (health.runtime && health.runtime !== "torch" ? ", runtime " + health.runtime : "") + " (" +
        health.num_classes + " classes, input " + health.input_size.join("x") + ")";
      for (const m of methods.methods) {
        const tip = [m.description, m.family ? "family: " + m.family : "", m.cost ? "cost: " + m.cost : "",
                     m.reason || ""].filter(Boolean).join("\n");
        const o = el("option", { value: m.name, title: tip, "data-family": m.family || "" },
                     (m.label || m.name) + (m.family ? " [" + m.family + "]" : "") +
                     (m.slow ? " (slow)" : ""));
        if (!m.available) { o.disabled = true; o.textContent += " (not for this model)"; }
        $("method").appendChild(o);
      }
      $("method").value = methods.default_method;
      for (const m of methods.methods) {
        if (!m.available) continue;
        const label = el("label", { class: "check", title: m.cost ? "cost: " + m.cost : "" });
        const box = el("input", { type: "checkbox", value: m.name });
        box.checked = !m.slow;  // methods with a forward pass per channel only when chosen
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + (m.label || m.name) + (m.slow ? " (slow)" : "")));
        $("compare-methods").appendChild(label);
      }
      // TTA: flip, and flip over two input sizes (the model's and 1.25 times it)
      const side = health.input_size[0], big = Math.round(side * 1.25);
      $("tta").appendChild(el("option", { value: "flip,scales=" + side + ":" + big },
                              "flip, sizes " + side + " and " + big));
      state.layers = methods.layers;
      for (const l of methods.layers) $("layer").appendChild(el("option", { value: l.name }, l.label || l.name));
      updateLayerOptions();
      readHash();
      if (health.runs) { $("tab-runs").hidden = false; $("batch").hidden = false; }
      if (health.localizer) $("localizer-row").hidden = false;  // served with --localizer
      document.body.dataset.ready = "1";
    } catch (e) {
      setStatus("cannot reach the server: " + e.message, true);
    }
  }

  // ---------------------------------------------------------------- shareable settings
  // The settings live in the address (#method=gradcam&layer=blocks.5&classes=285,281&threshold=0.35
  // &multi=1&topk=5&opacity=0.5&raw=1): copy it to share them; opening it restores them, and the
  // classes are explained on the next picture.
  function readHash() {
    const q = new URLSearchParams(location.hash.replace(/^#/, ""));
    const has = function (k) { return q.has(k) && q.get(k) !== ""; };
    if (has("method") && methodMeta(q.get("method")) && methodMeta(q.get("method")).available) {
      $("method").value = q.get("method");
    }
    if (q.has("tta") && Array.from($("tta").options).some(function (o) { return o.value === q.get("tta"); })) {
      $("tta").value = q.get("tta");
    }
    if (q.has("layer") && state.layers.some(function (l) { return l.name === q.get("layer"); })) {
      $("layer").value = q.get("layer");
    }
    updateLayerOptions();
    if ($("layer").selectedOptions.length && $("layer").selectedOptions[0].disabled) $("layer").value = "";
    const num = function (k, lo, hi) {
      const v = parseFloat(q.get(k));
      return has(k) && isFinite(v) && v >= lo && v <= hi ? v : null;  // else: left as it is
    };
    const t = num("threshold", 0, 1), o = num("opacity", 0, 1), k = num("topk", 1, MAX_TOP_K);
    if (t !== null) { $("threshold").value = String(t); $("threshold-value").textContent = t.toFixed(2); }
    if (o !== null) { $("opacity").value = String(o); $("opacity-value").textContent = o.toFixed(2); }
    if (k !== null) $("topk").value = String(Math.round(k));
    $("multi").checked = q.get("multi") === "1";
    $("raw-map").checked = q.get("raw") === "1";
    state.hashClasses = has("classes") ? q.get("classes").split(",").map(Number).filter(function (n) {
      return Number.isInteger(n) && n >= 0 && n < state.classNames.length;
    }).slice(0, MAX_TOP_K) : null;
    if (state.hashClasses && !state.hashClasses.length) state.hashClasses = null;
  }

  function writeHash() {
    const s = settings(), q = new URLSearchParams();
    q.set("method", s.method); q.set("layer", s.layer); q.set("topk", String(s.topK));
    q.set("threshold", s.threshold.toFixed(2));
    if (s.tta) q.set("tta", s.tta);
    if (s.multi) q.set("multi", "1");
    if ($("raw-map").checked) q.set("raw", "1");
    q.set("opacity", s.opacity.toFixed(2));
    if (state.entries.length && state.response && state.response.chosen) {
      q.set("classes", state.entries.map(function (e) { return e.id; }).join(","));
    }
    history.replaceState(null, "", "#" + q.toString());
  }

  // ---------------------------------------------------------------- image input
  // Forget the shown result entirely: a new picture never shows (or draws over) the old one's
  // classes, map, boxes or point.
  function clearResult(message) {
    state.response = null; state.entries = []; state.selected = 0; state.heat = null;
    state.all = null; state.point = null;
    $("classes").innerHTML = "";
    $("point-classes").innerHTML = "";
    $("point-info").textContent = "Click the image: the classes whose maps are highest there.";
    $("compare-panel").hidden = true;
    const canvas = $("view");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    canvas.hidden = true;
    $("placeholder").hidden = false;
    $("placeholder").textContent = message || "No image yet.";
    const readout = $("box-readout");
    readout.textContent = "";
    ["box", "boxes", "threshold", "classId"].forEach(function (k) { delete readout.dataset[k]; });
    const label = $("view-label");
    label.textContent = "";
    ["method", "layer", "classId"].forEach(function (k) { delete label.dataset[k]; });
    ["compare", "download-png", "download-json"].forEach(function (b) { $(b).disabled = true; });
  }

  function takeFile(file) {
    if (!file) return;
    cancelJob();
    state.requestId++;  // any answer still on its way is for the previous picture
    state.file = null; state.image = null;
    clearResult("Reading " + (file.name || "the pasted image") + " ...");
    if (file.type && !file.type.startsWith("image/")) {
      clearResult("Refused: not an image");
      setStatus("not an image: " + file.name, true);
      return;
    }
    state.fileName = file.name || "pasted-image";
    // busy from the moment a new picture is taken (explain() clears the flag when it is done)
    document.body.dataset.busy = "1";
    const url = URL.createObjectURL(file);
    const img = new Image();
    const taken = state.requestId;
    img.onload = function () {
      if (taken !== state.requestId) return;  // another picture was taken meanwhile
      state.file = file;
      state.image = img;
      explain(state.hashClasses, true, true);
    };
    img.onerror = function () {
      if (taken !== state.requestId) return;
      delete document.body.dataset.busy;
      clearResult("Refused: the browser cannot display this image");
      setStatus("the browser cannot display this image: " + state.fileName, true);
    };
    img.src = url;
  }

  function wireInput() {
    const drop = $("drop");
    drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (e) {
      e.preventDefault(); drop.classList.remove("over");
      takeFile(e.dataTransfer.files[0]);
    });
    drop.addEventListener("keydown", function (e) { if (e.key === "Enter") $("file").click(); });
    drop.addEventListener("keydown", function (e) {
      if (e.key === " ") { e.preventDefault(); $("file").click(); }
    });
    $("file").addEventListener("change", function () {
      const f = $("file").files[0];
      $("file").value = "";  // choosing the same file again is a new choice
      takeFile(f);
    });
    document.addEventListener("paste", function (e) {
      const items = (e.clipboardData && e.clipboardData.items) || [];
      for (const it of items) {
        if (it.kind === "file" && it.type.startsWith("image/")) { takeFile(it.getAsFile()); return; }
      }
    });
  }

  // ---------------------------------------------------------------- explaining
  // classIds: null -> top-k; an array -> exactly those classes (keeps the list when switching
  // method or layer). wantAll: also ask for every class's raw map (once per image).
  // fresh: the first request for a new picture (a refusal clears the page); otherwise a change of
  // method, layer or classes (a refusal puts the controls back to what the picture shows).
  async function explain(classIds, wantAll, fresh) {
    if (!state.file) return;
    const s = settings();
    const meta = methodMeta(s.method);
    const form = new FormData();
    form.append("image", state.file, state.fileName);
    form.append("method", s.method);
    form.append("layer", s.layer);
    form.append("tta", s.tta);
    if (s.localizer) form.append("localizer", "true");
    form.append("top_k", String(s.topK));
    if (classIds) form.append("classes", classIds.join(","));
    form.append("threshold", String(s.threshold));
    form.append("multi", String(s.multi));
    form.append("maps", "f16");
    form.append("all_maps", String(!!(wantAll && state.health && state.health.all_class_maps)));
    const id = ++state.requestId;
    cancelJob();  // a slow request still running is for settings no longer wanted
    setStatus("explaining with " + s.method + " ...");
    document.body.dataset.busy = "1";
    if (meta && meta.slow) {
      const jobId = "j" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
      form.append("job", jobId);
      followJob(jobId, s, classIds ? classIds.length : s.topK);
    }
    try {
      const r = await api("/api/explain", { method: "POST", body: form });
      if (id !== state.requestId) return;  // a newer request superseded this one
      endJob();
      const planes = await M.decodeMaps(r.maps);
      const keepId = state.entries.length ? state.entries[state.selected].id : null;
      state.response = r;
      r.chosen = !!classIds;  // classes named (shared in the address), not the top-k
      state.entries = r.classes.map(function (c, j) {
        return { id: c.id, name: c.name, prob: c.prob, map: planes[j] };
      });
      const keep = state.entries.findIndex(function (e) { return e.id === keepId; });
      state.selected = keep >= 0 ? keep : 0;
      if (r.all_maps) state.all = { flat: M.decodeF16(r.all_maps.data), shape: r.all_maps.shape };
      setStatus(r.method + ": " + r.classes.length + " classes in " + r.seconds.toFixed(3) + " s" +
                (r.queued_seconds > 0.05 ? " (after " + r.queued_seconds.toFixed(1) + " s waiting)" : ""));
      renderClasses();
      selectClass(state.selected);
      ["compare", "download-png", "download-json"].forEach(function (b) { $(b).disabled = false; });
      writeHash();
      if (fresh) {  // a new picture: its result in sight (below the controls on a phone)
        const top = $("view").getBoundingClientRect().top;
        if (top > window.innerHeight * 0.6 || top < 0) $("view-label").scrollIntoView({ block: "start" });
      }
    } catch (e) {
      if (id !== state.requestId) return;
      endJob();
      if (fresh || !state.response) {
        clearResult("Refused: " + e.message);
        setStatus(e.message, true);
      } else {
        // the picture still shows the last answer: the controls say so too
        $("method").value = state.response.method;
        $("layer").value = state.response.layer;
        $("tta").value = state.response.tta === "none" ? "" : state.response.tta;
        $("localizer").checked = !!state.response.localizer;
        updateLayerOptions();
        setStatus(e.message + " (still showing " + describe(state.response) + ")", true);
      }
    } finally {
      if (id === state.requestId) delete document.body.dataset.busy;
    }
  }

  function describe(r) {
    const layer = (r.layers && r.layers.length) ? r.layers.join(", ") : (r.layer || "default layer");
    return r.method + " on " + layer + (r.tta && r.tta !== "none" ? " with TTA " + r.tta : "") +
      (r.localizer ? " with the localizer" : "");
  }

  // ---------------------------------------------------------------- slow methods: estimate,
  // progress, Cancel
  async function followJob(jobId, s, k) {
    state.job = { id: jobId, timer: null };
    const box = $("job");
    box.hidden = false;
    $("job-progress").removeAttribute("value");
    $("job-info").textContent = "estimating ...";
    try {
      const q = new URLSearchParams({ method: s.method, layer: s.layer, top_k: String(k) });
      const est = await api("/api/estimate?" + q.toString());
      if (!state.job || state.job.id !== jobId) return;
      $("job-info").textContent = s.method + ": about " + fmtSeconds(est.seconds) +
        (est.waiting ? " after " + est.waiting + " slow request(s) ahead" : "");
      box.dataset.estimate = String(est.seconds);
    } catch (e) { /* the request itself reports errors */ }
    const poll = async function () {
      if (!state.job || state.job.id !== jobId) return;
      try {
        const st = await api("/api/jobs/" + jobId);
        if (!state.job || state.job.id !== jobId) return;
        box.dataset.state = st.state;
        if (st.state === "queued") {
          $("job-info").textContent = s.method + ": waiting for the slow lane (" +
            st.queued_s.toFixed(0) + " s)";
        } else if (st.state === "running") {
          if (st.fraction !== null) $("job-progress").value = st.fraction;
          $("job-info").textContent = s.method + ": " + Math.round(100 * (st.fraction || 0)) + "%" +
            (st.expected_passes ? ", pass " + st.passes + " of at most " + st.expected_passes : "") +
            (st.left_s !== null ? ", about " + fmtSeconds(st.left_s) + " left" : "");
        }
      } catch (e) { /* not registered yet */ }
      if (state.job && state.job.id === jobId) state.job.timer = setTimeout(poll, 400);
    };
    state.job.timer = setTimeout(poll, 200);
  }

  function fmtSeconds(x) { return x < 90 ? x.toFixed(x < 10 ? 1 : 0) + " s" : (x / 60).toFixed(1) + " min"; }

  function endJob() {
    if (state.job && state.job.timer) clearTimeout(state.job.timer);
    state.job = null;
    $("job").hidden = true;
  }

  // Cancel the followed slow request (the server stops it at its next pass).
  function cancelJob() {
    const job = state.job;
    if (!job) return;
    endJob();
    fetch("/api/jobs/" + job.id, { method: "DELETE" }).catch(function () {});
  }

  // Layers the chosen method cannot use are greyed out (their reason as a tooltip); a method
  // without a layer choice greys out the whole list.
  function updateLayerOptions() {
    const method = $("method").value, meta = methodMeta(method);
    const sel = $("layer");
    Array.from(sel.options).forEach(function (o, i) {
      const l = state.layers[i] || {};
      const why = l.refused_by && l.refused_by[method];
      o.disabled = !!why;
      o.title = why || "";
      o.textContent = (l.label || l.name) + (why ? " (not for " + method + ")" : "");
    });
    sel.disabled = state.layers.length < 2 || (meta !== null && meta.layer_choice === false);
  }

  // Add one class (from the search or the point list) and show it.
  function explainClass(classId) {
    const ids = state.entries.map(function (e) { return e.id; });
    if (ids.indexOf(classId) < 0) ids.push(classId);
    explain(ids, false).then(function () {
      const j = state.entries.findIndex(function (e) { return e.id === classId; });
      if (j >= 0) selectClass(j);
    });
  }

  function renderClasses() {
    const ol = $("classes");
    ol.innerHTML = "";
    state.entries.forEach(function (e, j) {
      const bar = el("span", { class: "bar" });
      bar.style.width = Math.max(1, Math.round(100 * e.prob)) + "%";
      ol.appendChild(pickItem({ "data-class": String(e.id) },
        [el("span", { class: "name" }, e.name), el("span", { class: "prob" }, (100 * e.prob).toFixed(1) + "%"), bar],
        function () { selectClass(j); }));
    });
  }

  function selectClass(j) {
    state.selected = j;
    Array.from($("classes").children).forEach(function (li, k) {
      li.classList.toggle("selected", k === j);
      li.firstChild.setAttribute("aria-pressed", String(k === j));
    });
    buildHeat();
    draw();
  }

  // ---------------------------------------------------------------- drawing
  function currentBoxes() {
    const e = state.entries[state.selected], r = state.response;
    if (!e || !r) return { largest: null, all: [] };
    const s = settings(), g = r.geometry, W = g.input_width, H = g.input_height;
    const largest = M.toOriginalBoxes(M.boxesFromMap(e.map, W, H, s.threshold, false), g, r.image.width, r.image.height)[0];
    const all = s.multi ? M.toOriginalBoxes(M.boxesFromMap(e.map, W, H, s.threshold, true), g, r.image.width, r.image.height) : [];
    return { largest: largest, all: all };
  }

  function buildHeat() {
    const e = state.entries[state.selected], r = state.response;
    if (!e || !r) { state.heat = null; return; }
    const W = r.geometry.input_width, H = r.geometry.input_height;
    const c = document.createElement("canvas");
    c.width = W; c.height = H;
    c.getContext("2d").putImageData(new ImageData(M.heatmapPixels(e.map, W, H, $("raw-map").checked), W, H), 0, 0);
    state.heat = c;
  }

  // Paint image, heat map (placed by the geometry) and boxes onto ctx, at `scale` display pixels
  // per original pixel.
  function paint(ctx, scale, heat, boxes, opacity) {
    const r = state.response, g = r.geometry;
    const raw = $("raw-map").checked;
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    if (raw) {  // the map alone: black where the network input does not reach
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    } else {
      ctx.drawImage(state.image, 0, 0, ctx.canvas.width, ctx.canvas.height);
    }
    if (heat && (opacity > 0 || raw)) {
      ctx.save();
      ctx.globalAlpha = raw ? 1 : opacity;
      ctx.imageSmoothingEnabled = true;
      // input pixel x_in covers original x = (x_in + offset) / scale
      ctx.drawImage(heat, scale * g.offset_x / g.scale_x, scale * g.offset_y / g.scale_y,
                    scale * g.input_width / g.scale_x, scale * g.input_height / g.scale_y);
      ctx.restore();
    }
    const lw = Math.max(2, Math.round(ctx.canvas.width / 300));
    ctx.lineWidth = lw;
    if (boxes.all.length) {
      ctx.setLineDash([3 * lw, 2 * lw]);
      ctx.strokeStyle = "#ffd400";
      for (const b of boxes.all) ctx.strokeRect(scale * b[0], scale * b[1], scale * (b[2] - b[0]), scale * (b[3] - b[1]));
      ctx.setLineDash([]);
    }
    const b = boxes.largest;
    if (b && b[2] > b[0] && b[3] > b[1]) {
      ctx.strokeStyle = "#00e05a";
      ctx.strokeRect(scale * b[0], scale * b[1], scale * (b[2] - b[0]), scale * (b[3] - b[1]));
    }
  }

  function draw() {
    const r = state.response, e = state.entries[state.selected];
    if (!r || !state.image || !e) return;
    const canvas = $("view");
    canvas.hidden = false;
    const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(r.image.width, r.image.height));
    canvas.width = Math.round(r.image.width * scale);
    canvas.height = Math.round(r.image.height * scale);
    $("placeholder").hidden = true;
    const s = settings();
    const boxes = currentBoxes();
    paint(canvas.getContext("2d"), scale, state.heat, boxes, s.opacity);
    if (state.point) {
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#ffffff"; ctx.strokeStyle = "#000000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(scale * state.point.x, scale * state.point.y, 6, 0, 2 * Math.PI);
      ctx.fill(); ctx.stroke();
    }
    const label = $("view-label");
    label.textContent = describe(r) + " \u00b7 " + e.name + " (class " + e.id + ")";
    label.dataset.method = r.method; label.dataset.layer = r.layer; label.dataset.classId = String(e.id);
    const readout = $("box-readout");
    readout.textContent = e.name + ": box " + fmtBox(boxes.largest) +
      (s.multi ? " | " + boxes.all.length + " components" : "") + " at threshold " + s.threshold.toFixed(2);
    readout.dataset.box = JSON.stringify(boxes.largest);
    readout.dataset.boxes = JSON.stringify(boxes.all);
    readout.dataset.threshold = String(s.threshold);
    readout.dataset.classId = String(e.id);
  }

  // ---------------------------------------------------------------- point lookup
  function onCanvasClick(ev) {
    const r = state.response;
    if (!r || !state.entries.length) return;
    const canvas = $("view"), rect = canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) / rect.width * r.image.width;
    const y = (ev.clientY - rect.top) / rect.height * r.image.height;
    if (!state.all) {
      $("point-info").textContent = "This model cannot give every class's map from one pass.";
      return;
    }
    const ranking = M.pointRanking(state.all.flat, state.all.shape, r.geometry, x, y, 5);
    state.point = { x: x, y: y, ranking: ranking };
    $("point-info").textContent = "At (" + Math.round(x) + ", " + Math.round(y) + "): map value (raw CAM)";
    const ol = $("point-classes");
    ol.innerHTML = "";
    for (const item of ranking) {
      ol.appendChild(pickItem({ "data-class": String(item.id) },
        [el("span", { class: "name" }, state.classNames[item.id] || ("class " + item.id)),
         el("span", { class: "prob" }, item.value.toFixed(2))],
        function () { explainClass(item.id); }, "explain this class"));
    }
    ol.dataset.x = String(x); ol.dataset.y = String(y);
    draw();
  }

  // ---------------------------------------------------------------- search
  function onSearch() {
    const q = $("search").value.trim().toLowerCase();
    const ul = $("search-results");
    ul.innerHTML = "";
    if (!q) return;
    let shown = 0;
    for (let i = 0; i < state.classNames.length && shown < 12; i++) {
      if (state.classNames[i].toLowerCase().indexOf(q) < 0) continue;
      ul.appendChild(pickItem({ "data-class": String(i) }, [el("span", { class: "name" }, state.classNames[i])],
        function () {
          ul.innerHTML = ""; $("search").value = "";
          if (!state.file) { setStatus("choose an image first", true); return; }
          explainClass(i);
        }));
      shown++;
    }
    if (!shown) ul.appendChild(el("li", { class: "none muted" }, "no class name contains \u201c" + q + "\u201d"));
  }

  // ---------------------------------------------------------------- methods side by side
  async function compareMethods() {
    const e = state.entries[state.selected];
    if (!e || !state.file) return;
    const panel = $("compare-panel"), grid = $("compare-grid");
    panel.hidden = false;
    grid.innerHTML = "";
    $("compare-class").textContent = "for " + e.name;
    const s = settings();
    const chosen = Array.from(document.querySelectorAll("#compare-methods input:checked")).map(function (b) { return b.value; });
    const usable = state.methods.filter(function (m) { return m.available && chosen.indexOf(m.name) >= 0; });
    await Promise.all(usable.map(async function (m) {
      const fig = el("figure", { "data-method": m.name });
      const canvas = el("canvas");
      const cap = el("figcaption", {}, m.label || m.name);
      fig.appendChild(canvas); fig.appendChild(cap);
      grid.appendChild(fig);
      const form = new FormData();
      form.append("image", state.file, state.fileName);
      form.append("method", m.name);
      form.append("layer", s.layer);
      form.append("classes", String(e.id));
      form.append("threshold", String(s.threshold));
      form.append("maps", "f16");
      try {
        const r = await api("/api/explain", { method: "POST", body: form });
        const [map] = await M.decodeMaps(r.maps);
        const g = r.geometry, W = g.input_width, H = g.input_height;
        const heat = document.createElement("canvas");
        heat.width = W; heat.height = H;
        heat.getContext("2d").putImageData(new ImageData(M.heatmapPixels(map, W, H), W, H), 0, 0);
        const scale = Math.min(1, 320 / Math.max(r.image.width, r.image.height));
        canvas.width = Math.round(r.image.width * scale);
        canvas.height = Math.round(r.image.height * scale);
        const largest = M.toOriginalBoxes(M.boxesFromMap(map, W, H, s.threshold, false), g, r.image.width, r.image.height)[0];
        const saved = state.response;
        state.response = r;   // paint() reads the geometry of the answer it draws
        paint(canvas.getContext("2d"), scale, heat, { largest: largest, all: [] }, s.opacity);
        state.response = saved;
        // the time of its own computation, never the time it waited behind the others
        cap.textContent = (m.label || m.name) + " (" + r.seconds.toFixed(2) + " s)";
        fig.dataset.box = JSON.stringify(largest);
      } catch (err) {
        cap.textContent = (m.label || m.name) + ": " + err.message;
        fig.classList.add("failed");
      }
    }));
    panel.dataset.done = "1";
  }

  // ---------------------------------------------------------------- downloads
  function resultJson() {
    const r = state.response, s = settings();
    const g = r.geometry, W = g.input_width, H = g.input_height;
    return {
      image: state.fileName, width: r.image.width, height: r.image.height,
      model: r.model, method: r.method, layer: r.layer, threshold: s.threshold, multi: s.multi,
      normalization: r.normalization, box_convention: r.box_convention,
      classes: state.entries.map(function (e) {
        const out = {
          id: e.id, name: e.name, prob: e.prob,
          box: M.toOriginalBoxes(M.boxesFromMap(e.map, W, H, s.threshold, false), g, r.image.width, r.image.height)[0],
        };
        if (s.multi) out.boxes = M.toOriginalBoxes(M.boxesFromMap(e.map, W, H, s.threshold, true), g, r.image.width, r.image.height);
        return out;
      }),
      point: state.point ? {
        x: state.point.x, y: state.point.y,
        classes: state.point.ranking.map(function (p) { return { id: p.id, name: state.classNames[p.id], value: p.value }; }),
      } : null,
    };
  }

  // The colour scale under the picture: the overlay's colours and opacities from 0 to 1.
  function drawScale() {
    const c = $("scale"), w = c.width, h = c.height;
    const line = new Float32Array(w);
    for (let i = 0; i < w; i++) line[i] = i / (w - 1);
    const px = M.heatmapPixels(line, w, 1, false), img = new ImageData(w, h);
    for (let y = 0; y < h; y++) img.data.set(px, 4 * w * y);
    c.getContext("2d").putImageData(img, 0, 0);
  }

  // camloc-<image>-<method>-<class>.<ext>: one name per picture, method and class
  function downloadName(ext) {
    const r = state.response, e = state.entries[state.selected];
    const clean = function (t) { return String(t).replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 60); };
    const parts = ["camloc", clean(state.fileName) || "image", r ? clean(r.method) : ""];
    if (ext === "png" && e) parts.push(clean(e.name) || String(e.id));
    return parts.filter(Boolean).join("-") + "." + ext;
  }

  function wireControls() {
    $("threshold").addEventListener("input", function () {
      $("threshold-value").textContent = parseFloat($("threshold").value).toFixed(2);
      draw();
      if (state.response) writeHash();
    });
    $("opacity").addEventListener("input", function () {
      $("opacity-value").textContent = parseFloat($("opacity").value).toFixed(2);
      draw();
    });
    $("multi").addEventListener("change", draw);
    $("raw-map").addEventListener("change", function () { buildHeat(); draw(); });
    drawScale();
    const reexplain = function () {
      if (!state.entries.length) return explain(null, false);
      explain(state.entries.map(function (e) { return e.id; }), false);
    };
    $("method").addEventListener("change", function () {
      const method = $("method").value, layer = state.layers.find(function (l) { return l.name === $("layer").value; });
      if (layer && layer.refused_by && layer.refused_by[method]) $("layer").value = "";  // its default
      updateLayerOptions();
      reexplain();
    });
    $("layer").addEventListener("change", reexplain);
    $("tta").addEventListener("change", reexplain);
    $("localizer").addEventListener("change", function () {
      // the localizer's maps are min-max normalised and its boxes tuned at its own threshold
      const t = state.health && state.health.localizer && state.health.localizer.threshold;
      if ($("localizer").checked && typeof t === "number") {
        $("threshold").value = String(t); $("threshold-value").textContent = t.toFixed(2);
      }
      reexplain();
    });
    $("topk").addEventListener("change", function () {
      const raw = parseInt($("topk").value, 10);
      const k = settings().topK;
      if (raw !== k) {  // never run one number while showing another
        $("topk").value = String(k);
        setStatus("top-k: 1 to " + MAX_TOP_K + "; using " + k);
      }
      explain(null, false);
    });
    $("view").addEventListener("click", onCanvasClick);
    $("search").addEventListener("input", onSearch);
    $("compare").addEventListener("click", compareMethods);
    $("download-png").addEventListener("click", function () {
      // the overlay as shown, without the click marker
      const r = state.response, view = $("view");
      if (!r || !state.entries.length) return;
      const c = document.createElement("canvas");
      c.width = view.width; c.height = view.height;
      paint(c.getContext("2d"), view.width / r.image.width, state.heat, currentBoxes(), settings().opacity);
      c.toBlob(function (blob) { download(blob, downloadName("png")); }, "image/png");
    });
    $("download-json").addEventListener("click", function () {
      download(new Blob([JSON.stringify(resultJson(), null, 2)], { type: "application/json" }), downloadName("json"));
    });
    $("cancel").addEventListener("click", function () {
      const job = state.job;
      cancelJob();
      state.requestId++;
      delete document.body.dataset.busy;
      if (job) {
        setStatus("cancelled" + (state.response ? " (still showing " + describe(state.response) + ")" : ""));
        if (state.response) {
          $("method").value = state.response.method; $("layer").value = state.response.layer;
          updateLayerOptions();
        }
      }
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", function () {
        for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
        $("page-explain").hidden = tab.dataset.tab !== "explain";
        $("page-runs").hidden = tab.dataset.tab !== "runs";
        if (tab.dataset.tab === "runs" && window.CamlocRuns) window.CamlocRuns.show();
      });
    }
  }

  // ---------------------------------------------------------------- batch upload
  // Several photos -> a small explain run (the run folder `camloc explain` writes) under --runs,
  // with the current method, layer, top-k and threshold; progress while it runs.
  function showTab(name) {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
    $("page-explain").hidden = name !== "explain";
    $("page-runs").hidden = name !== "runs";
  }

  async function batchUpload(files) {
    if (!files.length) return;
    const s = settings(), form = new FormData();
    for (const f of files) form.append("images", f, f.name);
    form.append("method", s.method); form.append("layer", s.layer); form.append("tta", s.tta);
    form.append("top_k", String(s.topK)); form.append("threshold", String(s.threshold));
    const box = $("batch-job"), info = $("batch-info"), bar = $("batch-progress"), open = $("batch-open");
    box.hidden = false; open.hidden = true; bar.value = 0;
    info.textContent = "uploading " + files.length + " photo(s)...";
    let answer;
    try { answer = await api("/api/batch", { method: "POST", body: form }); } catch (e) {
      info.textContent = "batch refused: " + e.message; return;
    }
    box.dataset.run = answer.run;
    box.dataset.job = answer.job;
    delete box.dataset.state;
    $("batch-cancel").hidden = false;
    const poll = async function () {
      let st;
      try { st = await api("/api/jobs/" + answer.job); } catch (e) { info.textContent = e.message; return; }
      bar.value = st.images ? st.passes / st.images : 0;
      if (st.state === "queued" || st.state === "running") {
        info.textContent = (st.state === "queued" ? "waiting for the slow lane; " : "") +
          st.passes + " of " + st.images + " photo(s) explained";
        setTimeout(poll, 300);
        return;
      }
      bar.value = 1;
      info.textContent = st.state === "done" ?
        answer.run + ": " + st.done + " explained" + (st.failed ? ", " + st.failed + " failed (errors.jsonl)" : "") :
        answer.run + ": " + st.state + (st.error ? " (" + st.error + ")" : "");
      box.dataset.state = st.state;
      open.hidden = st.state !== "done";
      $("batch-cancel").hidden = true;
    };
    poll();
  }

  $("batch-files").addEventListener("change", function () {
    const files = Array.from($("batch-files").files || []);
    $("batch-files").value = "";  // the same files again start another run
    batchUpload(files);
  });
  $("batch-cancel").addEventListener("click", function () {
    const job = $("batch-job").dataset.job;
    if (job) fetch("/api/jobs/" + job, { method: "DELETE" }).catch(function () {});
  });
  $("batch-open").addEventListener("click", async function () {
    showTab("runs");
    if (window.CamlocRuns) { await window.CamlocRuns.show(); window.CamlocRuns.openRun($("batch-job").dataset.run); }
  });

  window.CamlocApp = { state: state, resultJson: resultJson, showTab: showTab, takeFile: takeFile };
  wireInput();
  wireControls();
  init();
})();
