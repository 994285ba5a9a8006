// The API reference page: fetches /openapi.json and renders every operation,
// grouped by tag. DOM only through textContent (no HTML from the document).

const METHODS = ["get", "post", "put", "patch", "delete"];
const MAX_DEPTH = 6;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    const path = schema.$ref.replace(/^#\//, "").split("/");
    schema = path.reduce((node, key) => (node ? node[key] : undefined), doc);
  }
  return schema || {};
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

// A compact, readable outline of a JSON schema.
function describe(doc, schema, depth = 0, indent = "") {
  const name = refName(schema);
  const s = resolve(doc, schema);
  const label = name ? `${name} ` : "";
  if (depth > MAX_DEPTH) return `${label}…`;
  for (const key of ["oneOf", "anyOf"]) {
    if (s[key]) return s[key].map((part) => describe(doc, part, depth + 1, indent)).join(" | ");
  }
  const type = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (type === "object" || s.properties) {
    const required = new Set(s.required || []);
    const lines = Object.entries(s.properties || {}).map(([prop, sub]) => {
      const mark = required.has(prop) ? "" : "?";
      return `${indent}  ${prop}${mark}: ${describe(doc, sub, depth + 1, indent + "  ")}`;
    });
    if (!lines.length) return `${label}{}`;
    return `${label}{\n${lines.join("\n")}\n${indent}}`;
  }
  if (type === "array") return `${label}[${describe(doc, s.items || {}, depth + 1, indent)}]`;
  const extras = [];
  if (s.enum) extras.push(s.enum.map((v) => JSON.stringify(v)).join(" | "));
  if (s.format) extras.push(s.format);
  if (s.minimum !== undefined) extras.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined) extras.push(`≤ ${s.maximum}`);
  if (s.maxLength !== undefined) extras.push(`≤ ${s.maxLength} chars`);
  const base = `${label}${type || "any"}`;
  return extras.length ? `${base} (${extras.join(", ")})` : base;
}

function parametersTable(doc, params) {
  const table = el("table");
  table.append(el("thead", {}, el("tr", {}, ...["name", "in", "type", "description"].map((h) => el("th", { text: h, scope: "col" })))));
  const body = el("tbody");
  for (const raw of params) {
    const p = resolve(doc, raw);
    const name = p.name + (p.required ? "" : "?");
    body.append(el("tr", {},
      el("td", {}, el("code", { text: name })),
      el("td", { text: p.in }),
      el("td", {}, el("code", { text: describe(doc, p.schema || {}) })),
      el("td", { text: p.description || "" })));
  }
  table.append(body);
  return table;
}

function contentBlock(doc, content) {
  const box = el("div");
  for (const [media, spec] of Object.entries(content || {})) {
    box.append(el("p", {}, el("code", { text: media })));
    if (spec.schema) box.append(el("pre", { text: describe(doc, spec.schema) }));
  }
  return box;
}

function operation(doc, path, method, op) {
  const id = `op-${op.operationId || method + path}`;
  const details = el("details", { class: "op", id });
  details.append(el("summary", {},
    el("span", { class: `method method-${method}`, text: method }),
    el("span", { class: "path", text: path }),
    el("span", { class: "summary", text: op.summary || "" })));
  const body = el("div", { class: "op-body" });
  if (op.description) body.append(el("p", { text: op.description }));
  const security = (op.security || []).map((req) => Object.keys(req).join(" + ") || "none");
  if (security.length) body.append(el("p", { text: `Credentials: ${security.join(" or ")}` }));
  if (op["x-websocket"]) body.append(el("p", { text: "WebSocket endpoint." }));
  if (op.parameters && op.parameters.length) {
    body.append(el("h4", { text: "Parameters" }), parametersTable(doc, op.parameters));
  }
  if (op.requestBody) {
    const rb = resolve(doc, op.requestBody);
    body.append(el("h4", { text: rb.required ? "Request body" : "Request body (optional)" }), contentBlock(doc, rb.content));
  }
  body.append(el("h4", { text: "Responses" }));
  const list = el("dl");
  for (const [status, raw] of Object.entries(op.responses || {})) {
    const r = resolve(doc, raw);
    list.append(el("dt", {}, el("strong", { text: status })), el("dd", {}, el("span", { text: r.description || "" }), contentBlock(doc, r.content)));
  }
  body.append(list);
  details.append(body);
  return details;
}

function render(doc) {
  const groups = new Map();
  for (const [path, ops] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = ops[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push([path, method, op]);
    }
  }
  const main = document.getElementById("docs-main");
  const nav = document.getElementById("docs-nav");
  main.replaceChildren();
  const info = doc.info || {};
  main.append(el("h2", { text: `${info.title || "API"} ${info.version ? "v" + info.version : ""}` }));
  if (info.description) main.append(el("p", { text: info.description }));
  const navList = el("ul");
  for (const [tag, ops] of groups) {
    const sectionId = `tag-${tag}`;
    navList.append(el("li", {}, el("a", { href: `#${sectionId}`, text: tag })));
    const section = el("section", { id: sectionId, "aria-labelledby": `${sectionId}-h` });
    section.append(el("h3", { id: `${sectionId}-h`, text: tag }));
    for (const [path, method, op] of ops) section.append(operation(doc, path, method, op));
    main.append(section);
  }
  nav.replaceChildren(navList);
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

async function main() {
  try {
    const resp = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
  } catch (err) {
    const box = document.getElementById("docs-main");
    box.replaceChildren(el("p", { class: "error", role: "alert", text: `Could not load /openapi.json: ${err.message}` }));
  }
}

main();
