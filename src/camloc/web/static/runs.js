/* camloc runs browser: evaluation runs under --runs DIR, their figures and curves, a sortable
 * per-image table, and one image with its ground-truth (red) and predicted (green) boxes. */
(function () {
  "use strict";
  const $ = function (id) { return document.getElementById(id); };
  const PAGE = 20;
  const view = { runs: [], run: null, rows: [], sortKey: "iou", sortAsc: true, page: 0, filter: "" };

  async function api(path) {
    const resp = await fetch(path);
    const body = await resp.json().catch(function () { return null; });
    if (!resp.ok) throw new Error(body && body.error ? body.error : resp.status + " " + resp.statusText);
    return body;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  // The per-image table's columns: evaluation runs (IoU, correctness) and explain runs (the top
  // class and its probability).
  const COLUMNS = {
    evaluate: [["image_id", "image"], ["iou", "IoU"], ["correct", "correct"]],
    explain: [["name", "image"], ["class_name", "top class"], ["prob", "probability"]],
  };

  function fmt(v, digits) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }

  // ---------------------------------------------------------------- list of runs
  async function show() {
    try {
      const data = await api("/api/runs");
      view.runs = data.runs;
      const tbody = $("runs-table").tBodies[0];
      tbody.innerHTML = "";
      for (const r of data.runs) {
        const tr = document.createElement("tr");
        tr.dataset.run = r.id;
        cell(tr, r.id === "." || r.id === "" ? "(top folder)" : r.id);
        if (r.error) { cell(tr, r.error, "error").colSpan = 6; } else {
          cell(tr, r.model); cell(tr, r.method || ""); cell(tr, r.dataset + (r.split ? " / " + r.split : ""));
          cell(tr, r.images === null ? "" : String(r.images), "num");
          cell(tr, fmt(r.maxboxacc_v2, 2), "num"); cell(tr, fmt(r.gt_known_loc, 2), "num");
          operable(tr, function () { openRun(r.id); });
        }
        tbody.appendChild(tr);
      }
      $("runs-status").textContent = data.runs.length ? data.runs.length + " run(s) under " + data.root :
        "No run found under " + data.root + " (camloc evaluate or camloc explain --out there, or a batch upload).";
      fillCompareChoice();
    } catch (e) {
      $("runs-status").textContent = e.message;
    }
  }

  // ---------------------------------------------------------------- one run
  async function openRun(id) {
    let data;
    try { data = await api("/api/runs/report?run=" + encodeURIComponent(id)); } catch (e) {
      $("runs-status").textContent = e.message; return;
    }
    view.run = data;
    view.kind = data.kind === "explain" ? "explain" : "evaluate";
    $("run-detail").hidden = false;
    $("run-image-panel").hidden = true;
    $("run-compare").hidden = true;
    $("compare-row").hidden = view.kind === "explain";
    fillCompareChoice();
    const rep = data.report, model = (rep.model || {}).name || rep.maps || "maps";
    $("run-title").textContent = view.kind === "explain" ?
      id + ": explain run (" + (rep.manifest.model || "") + ", " + (rep.manifest.method || "") + ")" :
      id + ": " + model + " on " + ((rep.dataset || {}).name || "");
    $("run-curves").hidden = $("run-hist").hidden = view.kind === "explain";  // no IoU to plot
    view.sortKey = view.kind === "explain" ? "name" : "iou";
    view.sortAsc = true;
    buildHeader();
    const link = $("run-html");
    link.hidden = !data.has_html;
    if (data.has_html) link.href = "/runs/files/" + (id === "." ? "" : id.split("/").map(encodeURIComponent).join("/") + "/") + "report.html";
    const fig = $("run-figures").tBodies[0];
    fig.innerHTML = "";
    for (const row of data.figures) {
      const tr = document.createElement("tr");
      cell(tr, row[0]); cell(tr, row[1]);
      fig.appendChild(tr);
    }
    drawCurves($("run-curves"), [((rep.localization || {}).curves) || null], [""]);
    view.rows = data.per_image;
    drawHistogram(view.rows);
    $("per-image-count").textContent = "(" + view.rows.length + ")";
    const note = $("per-image-note");
    note.hidden = view.rows.length > 0;
    note.textContent = view.kind === "explain" ? "This run has no results yet (results.jsonl)." :
      "This report has no per-image records (report.json per_image or per_image.jsonl).";
    view.page = 0;
    renderTable();
    $("run-detail").dataset.run = id;
  }

  function sortedRows() {
    const key = view.sortKey, dir = view.sortAsc ? 1 : -1;
    const q = view.filter.toLowerCase();
    const rows = q ? view.rows.filter(function (r) { return (r.name || r.image_id).toLowerCase().indexOf(q) >= 0; }) : view.rows.slice();
    rows.sort(function (a, b) {
      const x = a[key], y = b[key];
      if (x === y) return a.image_id < b.image_id ? -1 : a.image_id > b.image_id ? 1 : 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    return rows;
  }

  function renderTable() {
    const rows = sortedRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    view.page = Math.min(Math.max(view.page, 0), pages - 1);
    const tbody = $("per-image").tBodies[0];
    tbody.innerHTML = "";
    for (const r of rows.slice(view.page * PAGE, (view.page + 1) * PAGE)) {
      const tr = document.createElement("tr");
      tr.dataset.imageId = r.image_id;
      if (view.kind === "explain") {
        cell(tr, r.name || r.image_id); cell(tr, r.class_name || ""); cell(tr, fmt(r.prob, 3), "num");
      } else {
        cell(tr, r.image_id);
        cell(tr, fmt(r.iou, 3), "num");
        cell(tr, r.correct === null || r.correct === undefined ? "" : r.correct ? "yes" : "no", r.correct ? "ok" : "bad");
      }
      operable(tr, function () { openImage(r.image_id); });
      tbody.appendChild(tr);
    }
    $("page-info").textContent = "page " + (view.page + 1) + " / " + pages;
    for (const th of $("per-image").tHead.rows[0].cells) {
      th.classList.toggle("asc", th.dataset.key === view.sortKey && view.sortAsc);
      th.classList.toggle("desc", th.dataset.key === view.sortKey && !view.sortAsc);
      th.setAttribute("aria-sort", th.dataset.key !== view.sortKey ? "none" : view.sortAsc ? "ascending" : "descending");
    }
  }

  async function openImage(imageId) {
    const run = view.run.id;
    const panel = $("run-image-panel"), cap = $("run-image-caption");
    panel.hidden = false;
    let info;
    try {
      info = await api("/api/runs/image?run=" + encodeURIComponent(run) + "&image_id=" + encodeURIComponent(imageId));
    } catch (e) { cap.textContent = imageId + ": " + e.message; return; }
    view.image = info;
    showSavedMaps(info);
    const img = new Image();
    if (info.kind === "explain") {
      const overlay = (info.saved_maps || []).find(function (m) { return m.kind === "overlay"; });
      img.onload = function () {
        const canvas = $("run-image");
        const scale = Math.min(1, 480 / Math.max(img.width, img.height));
        canvas.width = Math.round(img.width * scale); canvas.height = Math.round(img.height * scale);
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        cap.textContent = (info.name || imageId) + ": " + info.classes.map(function (c) {
          return c.name + " " + fmt(c.prob, 3); }).join(", ") + " (" + info.method + "; the saved overlay)";
        panel.dataset.imageId = imageId;
      };
      img.onerror = function () { cap.textContent = imageId + ": the overlay cannot be shown"; };
      if (overlay) img.src = overlay.url; else cap.textContent = imageId + ": no overlay saved";
      return;
    }
    img.onload = function () {
      const canvas = $("run-image");
      const scale = Math.min(8, 480 / Math.max(info.width, info.height));  // small images enlarged
      canvas.width = Math.round(info.width * scale); canvas.height = Math.round(info.height * scale);
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#ff3030";
      for (const b of info.gt_boxes) ctx.strokeRect(scale * b[0], scale * b[1], scale * (b[2] - b[0]), scale * (b[3] - b[1]));
      if (info.pred_box) {
        const b = info.pred_box;
        ctx.strokeStyle = "#00e05a";
        ctx.strokeRect(scale * b[0], scale * b[1], scale * (b[2] - b[0]), scale * (b[3] - b[1]));
      }
      cap.textContent = imageId + (info.class_name ? " (" + info.class_name + ")" : "") + ": IoU " + fmt(info.iou, 3) + (info.correct === null ? "" : info.correct ? " (correct)" : " (wrong)") +
        "; ground truth red, prediction green";
      panel.dataset.imageId = imageId;
    };
    img.onerror = function () { cap.textContent = imageId + ": the image cannot be shown"; };
    img.src = info.url;
  }

  // ---------------------------------------------------------------- saved maps, open in Explain
  function showSavedMaps(info) {
    const box = $("run-image-maps");
    box.innerHTML = "";
    for (const m of info.saved_maps || []) {
      if (m.kind === "overlay" && info.kind === "explain") continue;  // drawn above
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = m.url;
      img.alt = (m.kind === "scoremap" ? "saved score map" : "saved map") + " of " + info.image_id;
      const cap = document.createElement("figcaption");
      cap.className = "muted";
      cap.textContent = m.kind === "scoremap" ? "score map (scoremaps/, as evaluated)" :
        m.kind === "maps" ? "map of " + (info.class_name || "the top class") + " (maps/)" : m.kind;
      fig.appendChild(img); fig.appendChild(cap);
      box.appendChild(fig);
    }
    $("open-in-explain").hidden = !(info.kind === "explain" ? info.source_url : info.url);
  }

  async function openInExplain() {
    const info = view.image;
    if (!info) return;
    const url = info.kind === "explain" ? info.source_url : info.url;
    const resp = await fetch(url);
    if (!resp.ok) { $("run-image-caption").textContent = "the image cannot be fetched (" + resp.status + ")"; return; }
    const blob = await resp.blob();
    const name = info.kind === "explain" ? info.name : info.image_id.split("/").pop().replace(/\.[^.]*$/, "") + ".jpg";
    const app = window.CamlocApp;
    const method = document.getElementById("method");
    if (info.kind === "explain" && info.method && Array.from(method.options).some(function (o) { return o.value === info.method && !o.disabled; })) {
      method.value = info.method;
    }
    app.showTab("explain");
    app.takeFile(new File([blob], name, { type: blob.type || "image/jpeg" }));
  }

  // ---------------------------------------------------------------- two runs side by side
  function fillCompareChoice() {
    const sel = $("compare-run"), current = view.run ? view.run.id : null;
    const keep = sel.value;
    sel.innerHTML = "";
    const none = document.createElement("option");
    none.value = ""; none.textContent = "(another evaluation run)";
    sel.appendChild(none);
    for (const r of view.runs) {
      if (r.error || r.kind === "explain" || r.id === current) continue;
      const o = document.createElement("option");
      o.value = r.id; o.textContent = r.id + " (" + r.model + (r.method ? ", " + r.method : "") + ")";
      sel.appendChild(o);
    }
    sel.value = Array.from(sel.options).some(function (o) { return o.value === keep; }) ? keep : "";
  }

  async function compareWith(other) {
    const panel = $("run-compare");
    if (!other || !view.run) { panel.hidden = true; return; }
    let data;
    try {
      data = await api("/api/runs/compare?a=" + encodeURIComponent(view.run.id) + "&b=" + encodeURIComponent(other));
    } catch (e) { panel.hidden = false; $("compare-title").textContent = e.message; return; }
    panel.hidden = false;
    $("compare-title").textContent = "A: " + data.a + "  vs  B: " + data.b;
    drawCurves($("compare-curves"), data.curves, ["A ", "B "]);
    $("compare-summary").textContent = data.common + " image(s) in both: B better on " + data.better +
      ", worse on " + data.worse + (data.only_a || data.only_b ? "; only in A " + data.only_a + ", only in B " + data.only_b : "") +
      ". Largest IoU changes first:";
    const tbody = $("compare-table").tBodies[0];
    tbody.innerHTML = "";
    for (const r of data.per_image.slice(0, PAGE)) {
      const tr = document.createElement("tr");
      tr.dataset.imageId = r.image_id;
      cell(tr, r.image_id); cell(tr, fmt(r.iou_a, 3), "num"); cell(tr, fmt(r.iou_b, 3), "num");
      cell(tr, r.diff === null ? "" : (r.diff > 0 ? "+" : "") + r.diff.toFixed(3), r.diff > 0 ? "num ok" : r.diff < 0 ? "num bad" : "num");
      operable(tr, function () { openImage(r.image_id); });
      tbody.appendChild(tr);
    }
    panel.dataset.b = data.b;
  }

  // ---------------------------------------------------------------- plots
  // Axes with ticks: x from 0 to 1 (xticks), y from 0 to ymax (yticks, labelled with yfmt).
  function axes(ctx, w, h, pad, ylabel, xticks, yticks, ymax, yfmt) {
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#888"; ctx.lineWidth = 1;
    const top = 22;  // room for the y label above the plot
    ctx.strokeRect(pad, top, w - pad - 10, h - pad - top);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.fillText(ylabel, 4, 12);
    const X = function (t) { return pad + (w - pad - 10) * t; };
    const Y = function (v) { return top + (h - pad - top) * (1 - v / ymax); };
    ctx.textAlign = "center";
    for (const t of xticks) {
      ctx.beginPath(); ctx.moveTo(X(t), h - pad); ctx.lineTo(X(t), h - pad + 4); ctx.stroke();
      ctx.fillText(String(t), X(t), h - pad + 15);
    }
    ctx.textAlign = "right";
    for (const v of yticks) {
      ctx.beginPath(); ctx.moveTo(pad - 4, Y(v)); ctx.lineTo(pad, Y(v)); ctx.stroke();
      ctx.fillText(yfmt(v), pad - 6, Y(v) + 4);
    }
    ctx.textAlign = "start";
    return { X: X, Y: Y };
  }

  const THRESHOLD_TICKS = [0, 0.2, 0.4, 0.6, 0.8, 1];
  const PERCENT_TICKS = [0, 25, 50, 75, 100];

  // Box-accuracy curves of one run, or of several (prefixes "A ", "B ": B dotted).
  function drawCurves(c, list, prefixes) {
    const ctx = c.getContext("2d");
    const w = c.width, h = c.height, pad = 40;
    const ax = axes(ctx, w, h, pad, "box accuracy (%)", THRESHOLD_TICKS, PERCENT_TICKS, 100, String);
    c.setAttribute("role", "img");
    c.setAttribute("aria-label", "box accuracy (%) against the CAM threshold; x ticks " + THRESHOLD_TICKS.join(", ") +
      "; y ticks " + PERCENT_TICKS.join(", "));
    c.dataset.xticks = THRESHOLD_TICKS.join(",");
    c.dataset.yticks = PERCENT_TICKS.join(",");
    ctx.fillText("CAM threshold", w / 2 - 30, h - 4);
    if (!list.some(Boolean)) { ctx.fillText("no curves in this report", pad + 10, h / 2); return; }
    const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
    let k = 0;
    list.forEach(function (curves, r) {
      if (!curves) return;
      const thr = curves.thresholds;
      const series = [];
      for (const fam of ["v2", "v1"]) {  // V1 last, dashed, on top (it often equals V2 at IoU 0.5)
        if (list.length > 1 && fam === "v1") continue;  // side by side: V2 only
        for (const iou of Object.keys(curves[fam] || {}).sort()) series.push([fam, prefixes[r] + fam + " IoU " + (iou / 100).toFixed(1), curves[fam][iou]]);
      }
      series.forEach(function (sr, j) {
        const [fam, label, ys] = sr;
        const color = colors[(list.length > 1 ? j : k) % colors.length];
        ctx.strokeStyle = color; ctx.lineWidth = 1.5;
        ctx.setLineDash(fam === "v1" ? [5, 3] : r === 1 ? [2, 2] : []);
        ctx.beginPath();
        ys.forEach(function (v, i) { if (i === 0) ctx.moveTo(ax.X(thr[i]), ax.Y(v)); else ctx.lineTo(ax.X(thr[i]), ax.Y(v)); });
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = color;
        ctx.fillText(label + (r === 1 ? " (dotted)" : ""), w - 170, 36 + 14 * k);
        k++;
      });
    });
    ctx.fillStyle = "#333";
  }

  function drawHistogram(rows) {
    const c = $("run-hist"), ctx = c.getContext("2d");
    const w = c.width, h = c.height, pad = 40;
    const ious = rows.map(function (r) { return r.iou; }).filter(function (v) { return v !== null && v !== undefined; });
    const bins = new Array(20).fill(0);
    for (const v of ious) bins[Math.min(19, Math.floor(v * 20))]++;
    const top = Math.max(1, Math.max.apply(null, bins));
    const yticks = [0, Math.round(top / 2), top].filter(function (v, i, a) { return a.indexOf(v) === i; });
    axes(ctx, w, h, pad, "images", THRESHOLD_TICKS, yticks, top, String);
    c.setAttribute("role", "img");
    c.setAttribute("aria-label", "images per IoU bin; x ticks " + THRESHOLD_TICKS.join(", ") + "; y ticks " + yticks.join(", "));
    c.dataset.xticks = THRESHOLD_TICKS.join(",");
    c.dataset.yticks = yticks.join(",");
    if (!ious.length) { ctx.fillText("no per-image IoU", pad + 10, h / 2); return; }
    const bw = (w - pad - 10) / 20;
    bins.forEach(function (n, i) {
      const bh = (h - pad - 22) * n / top;
      ctx.fillStyle = i >= 10 ? "#2ca02c" : "#d62728";
      ctx.fillRect(pad + i * bw + 1, h - pad - bh, bw - 2, bh);
    });
    ctx.fillStyle = "#333";
    ctx.fillText("IoU (green: >= 0.5)", w / 2 - 50, h - 4);
  }

  // ---------------------------------------------------------------- wiring
  // A row or header used as a control: reachable with Tab, operated with Enter or Space.
  function operable(node, fn) {
    node.tabIndex = 0;
    node.addEventListener("click", fn);
    node.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fn(); }
    });
  }

  // The per-image header for the run's kind: each sort header operable by mouse and keyboard.
  function buildHeader() {
    const row = $("per-image").tHead.rows[0];
    row.innerHTML = "";
    for (const [key, label] of COLUMNS[view.kind || "evaluate"]) {
      const th = document.createElement("th");
      th.dataset.key = key; th.textContent = label;
      operable(th, function () {
        if (view.sortKey === th.dataset.key) view.sortAsc = !view.sortAsc;
        else { view.sortKey = th.dataset.key; view.sortAsc = true; }
        renderTable();
      });
      row.appendChild(th);
    }
  }
  buildHeader();
  $("compare-run").addEventListener("change", function () { compareWith($("compare-run").value); });
  $("open-in-explain").addEventListener("click", openInExplain);
  $("page-prev").addEventListener("click", function () { view.page--; renderTable(); });
  $("page-next").addEventListener("click", function () { view.page++; renderTable(); });
  $("per-image-filter").addEventListener("input", function () { view.filter = $("per-image-filter").value; view.page = 0; renderTable(); });

  window.CamlocRuns = { show: show, openRun: openRun, view: view };
})();
