/* The API reference, rendered from /openapi.json in the browser (nothing loaded from elsewhere). */
(function () {
  "use strict";
  const $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function resolve(spec, schema) {
    let s = schema || {};
    while (s.$ref) s = s.$ref.split("/").slice(1).reduce(function (o, k) { return o[k]; }, spec);
    return s;
  }

  function typeOf(spec, schema) {
    const s = resolve(spec, schema);
    if (s.anyOf) return s.anyOf.map(function (x) { return typeOf(spec, x); }).join(" | ");
    if (s.type === "string" && (s.format === "binary" || s.contentMediaType)) return "file";
    let t = s.type || "object";
    if (s.minimum !== undefined || s.maximum !== undefined) t += " [" + (s.minimum ?? "") + ".." + (s.maximum ?? "") + "]";
    return t;
  }

  function table(rows) {
    const t = el("table", { class: "table" });
    const head = el("tr");
    ["name", "in", "type", "default", "description"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
    t.appendChild(head);
    for (const r of rows) {
      const tr = el("tr");
      r.forEach(function (v) { tr.appendChild(el("td", {}, v === undefined ? "" : String(v))); });
      t.appendChild(tr);
    }
    return t;
  }

  async function render() {
    const spec = await (await fetch("/openapi.json")).json();
    $("api-info").textContent = spec.info.title + " " + spec.info.version;
    const root = $("endpoints");
    for (const path of Object.keys(spec.paths)) {
      for (const method of Object.keys(spec.paths[path])) {
        const op = spec.paths[path][method];
        const sec = el("section", { class: "endpoint", "data-path": path, "data-method": method });
        sec.appendChild(el("h2", {}, method.toUpperCase() + " " + path));
        if (op.summary) sec.appendChild(el("p", {}, op.summary));
        const rows = (op.parameters || []).map(function (p) {
          const s = resolve(spec, p.schema);
          return [p.name + (p.required ? " *" : ""), p.in, typeOf(spec, p.schema), s.default, p.description || s.description];
        });
        const body = op.requestBody && op.requestBody.content;
        if (body) {
          const media = Object.keys(body)[0];
          const schema = resolve(spec, body[media].schema);
          const required = schema.required || [];
          for (const name of Object.keys(schema.properties || {})) {
            const prop = resolve(spec, schema.properties[name]);
            rows.push([name + (required.indexOf(name) >= 0 ? " *" : ""), media, typeOf(spec, schema.properties[name]),
                       prop.default, prop.description]);
          }
        }
        if (rows.length) sec.appendChild(table(rows));
        const codes = Object.keys(op.responses || {});
        sec.appendChild(el("p", { class: "muted" }, "responses: " + codes.join(", ") + " (errors: {\"error\": reason})"));
        root.appendChild(sec);
      }
    }
    document.body.dataset.ready = "1";
  }

  render().catch(function (e) { $("endpoints").textContent = "cannot read /openapi.json: " + e.message; });
})();
