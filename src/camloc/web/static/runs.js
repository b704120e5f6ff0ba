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
        "No report.json found under " + data.root + " (run camloc evaluate --out there).";
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
    $("run-detail").hidden = false;
    $("run-image-panel").hidden = true;
    const rep = data.report, model = (rep.model || {}).name || rep.maps || "maps";
    $("run-title").textContent = id + ": " + model + " on " + ((rep.dataset || {}).name || "");
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
    drawCurves(((rep.localization || {}).curves) || null);
    view.rows = data.per_image;
    drawHistogram(view.rows);
    $("per-image-count").textContent = "(" + view.rows.length + ")";
    const note = $("per-image-note");
    note.hidden = view.rows.length > 0;
    note.textContent = "This report has no per-image records (report.json per_image or per_image.jsonl).";
    view.page = 0;
    renderTable();
    $("run-detail").dataset.run = id;
  }

  function sortedRows() {
    const key = view.sortKey, dir = view.sortAsc ? 1 : -1;
    const q = view.filter.toLowerCase();
    const rows = q ? view.rows.filter(function (r) { return r.image_id.toLowerCase().indexOf(q) >= 0; }) : view.rows.slice();
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
      cell(tr, r.image_id);
      cell(tr, fmt(r.iou, 3), "num");
      cell(tr, r.correct === null || r.correct === undefined ? "" : r.correct ? "yes" : "no", r.correct ? "ok" : "bad");
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
    const img = new Image();
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

  // ---------------------------------------------------------------- plots
  function axes(ctx, w, h, pad, ylabel) {
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#888"; ctx.lineWidth = 1;
    ctx.strokeRect(pad, 10, w - pad - 10, h - pad - 10);
    ctx.fillStyle = "#333"; ctx.font = "12px sans-serif";
    ctx.fillText(ylabel, 4, 20);
  }

  function drawCurves(curves) {
    const c = $("run-curves"), ctx = c.getContext("2d");
    const w = c.width, h = c.height, pad = 36;
    axes(ctx, w, h, pad, "box acc %");
    if (!curves) { ctx.fillText("no curves in this report", pad + 10, h / 2); return; }
    const thr = curves.thresholds;
    const X = function (t) { return pad + (w - pad - 10) * t; };
    const Y = function (v) { return 10 + (h - pad - 10) * (1 - v / 100); };
    const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
    let k = 0;
    const series = [];
    for (const fam of ["v2", "v1"]) {  // V1 last, dashed, on top (it often equals V2 at IoU 0.5)
      for (const iou of Object.keys(curves[fam] || {}).sort()) series.push([fam + " IoU " + (iou / 100).toFixed(1), curves[fam][iou]]);
    }
    for (const [label, ys] of series) {
      ctx.strokeStyle = colors[k % colors.length]; ctx.lineWidth = 1.5;
      if (label.startsWith("v1")) ctx.setLineDash([5, 3]); else ctx.setLineDash([]);
      ctx.beginPath();
      ys.forEach(function (v, i) { if (i === 0) ctx.moveTo(X(thr[i]), Y(v)); else ctx.lineTo(X(thr[i]), Y(v)); });
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = colors[k % colors.length];
      ctx.fillText(label, w - 120, 26 + 14 * k);
      k++;
    }
    ctx.fillStyle = "#333";
    ctx.fillText("CAM threshold", w / 2 - 30, h - 8);
    ctx.fillText("0", pad - 4, h - 14); ctx.fillText("1", w - 14, h - 14);
  }

  function drawHistogram(rows) {
    const c = $("run-hist"), ctx = c.getContext("2d");
    const w = c.width, h = c.height, pad = 36;
    axes(ctx, w, h, pad, "images");
    const ious = rows.map(function (r) { return r.iou; }).filter(function (v) { return v !== null && v !== undefined; });
    if (!ious.length) { ctx.fillText("no per-image IoU", pad + 10, h / 2); return; }
    const bins = new Array(20).fill(0);
    for (const v of ious) bins[Math.min(19, Math.floor(v * 20))]++;
    const top = Math.max.apply(null, bins);
    const bw = (w - pad - 10) / 20;
    bins.forEach(function (n, i) {
      const bh = (h - pad - 10) * n / top;
      ctx.fillStyle = i >= 10 ? "#2ca02c" : "#d62728";
      ctx.fillRect(pad + i * bw + 1, h - pad - bh, bw - 2, bh);
    });
    ctx.fillStyle = "#333";
    ctx.fillText("IoU (green: >= 0.5)", w / 2 - 50, h - 8);
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

  for (const th of $("per-image").tHead.rows[0].cells) {
    operable(th, function () {
      if (view.sortKey === th.dataset.key) view.sortAsc = !view.sortAsc;
      else { view.sortKey = th.dataset.key; view.sortAsc = true; }
      renderTable();
    });
  }
  $("page-prev").addEventListener("click", function () { view.page--; renderTable(); });
  $("page-next").addEventListener("click", function () { view.page++; renderTable(); });
  $("per-image-filter").addEventListener("input", function () { view.filter = $("per-image-filter").value; view.page = 0; renderTable(); });

  window.CamlocRuns = { show: show, openRun: openRun, view: view };
})();
