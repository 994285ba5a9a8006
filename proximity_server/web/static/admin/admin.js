// The admin console: the same sign-in as the web app (cookie mode), then
// charts of GET /stats/history (SVG drawn here, each with its data table),
// the live figures (server-sent events read through fetch, so the access
// token travels in a header) and the moderation queue.
import { ApiClient, ApiError, resumeSession, trackSessionHint } from "/static/client.js";

const api = new ApiClient();
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const CHARTS = [
  ["sessions", "Proximity sessions"], ["matches", "Proximity matches"], ["messages_sent", "Messages sent"],
  ["signups", "Sign-ups"], ["daily_active_users", "Daily active users"],
];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function table(labels, values, hidden, caption) {
  const t = el("table", {}, el("caption", {}, caption));
  t.append(el("tr", {}, el("th", { scope: "col" }, "Day"), el("th", { scope: "col" }, "Count")));
  // Newest day first: today's figure is the one people look for.
  for (let i = labels.length - 1; i >= 0; i--) {
    const cell = hidden[i] ? el("td", { class: "hidden-cell" }, "hidden") : el("td", {}, String(values[i]));
    t.append(el("tr", {}, el("td", {}, labels[i].slice(0, 10)), cell));
  }
  return t;
}

// A scrollable table can be reached and scrolled with the keyboard.
function scrollBox(content, label) {
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label }, content);
}

function svgText(x, y, text, anchor = "start") {
  const node = svgEl("text", { x, y, "text-anchor": anchor, class: "axis" });
  node.textContent = text;
  return node;
}

// Plot area inside the SVG: room on the left for the scale, below for dates.
const PAD = { left: 34, right: 6, top: 8, bottom: 18 };

function lineChart(title, labels, series) {
  // Hidden cells (under the minimum count) are gaps, never drawn as zero.
  const w = 400, h = 140, values = series.values.map((v, i) => (series.hidden[i] ? null : v));
  const max = Math.max(1, ...values.map((v) => v ?? 0));
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": `${title} chart, highest day ${max}` });
  const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom, bottom = PAD.top + ph;
  const step = values.length > 1 ? pw / (values.length - 1) : pw;
  const xy = (v, i) => [(PAD.left + i * step).toFixed(1), (bottom - (v / max) * ph).toFixed(1)];
  svg.append(
    svgEl("line", { class: "grid", x1: PAD.left, y1: PAD.top, x2: w - PAD.right, y2: PAD.top }),
    svgEl("line", { class: "grid", x1: PAD.left, y1: bottom, x2: w - PAD.right, y2: bottom }),
    svgText(PAD.left - 4, PAD.top + 4, String(max), "end"),
    svgText(PAD.left - 4, bottom + 4, "0", "end"),
  );
  if (labels.length) {
    svg.append(svgText(PAD.left, h - 3, labels[0].slice(5, 10)), svgText(w - PAD.right, h - 3, labels.at(-1).slice(5, 10), "end"));
  }
  let run = [];
  const endRun = () => {
    if (run.length > 1) svg.append(svgEl("polyline", { points: run.join(" ") }));
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null) { endRun(); return; }
    const [x, y] = xy(v, i);
    run.push(`${x},${y}`);
    svg.append(svgEl("circle", { class: "point", cx: x, cy: y, r: 3.5 }));
  });
  endRun();
  const box = el("div", { class: "chart" }, el("h3", {}, title));
  box.append(svg, scrollBox(table(labels, series.values, series.hidden, `${title} per day`), `${title} data`));
  return box;
}

function barChart(categories) {
  const totals = Object.entries(categories)
    .map(([name, s]) => [name, s.values.reduce((a, v) => a + (v ?? 0), 0)])
    .filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).slice(0, 8);
  const w = 400, h = 140, max = Math.max(1, ...totals.map(([, n]) => n));
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "top categories chart" });
  const bw = w / Math.max(1, totals.length), ph = h - 30;
  totals.forEach(([name, n], i) => {
    const bh = (n / max) * ph;
    svg.append(
      svgEl("rect", { class: "bar", x: i * bw + 4, y: h - 16 - bh, width: bw - 8, height: bh }),
      svgText(i * bw + bw / 2, h - 16 - bh - 3, String(n), "middle"),
      svgText(i * bw + bw / 2, h - 3, name.length > 12 ? `${name.slice(0, 11)}…` : name, "middle"),
    );
  });
  const t = el("table", {}, el("caption", {}, "Sessions per category (visible cells)"));
  for (const [name, n] of totals) t.append(el("tr", {}, el("td", {}, name), el("td", {}, String(n))));
  return el("div", { class: "chart" }, svg, scrollBox(t, "Top categories data"));
}

async function loadCharts() {
  const data = await api.request("GET", "/stats/history?granularity=day");
  const box = $("charts");
  box.replaceChildren(...CHARTS.filter(([k]) => data.series[k]).map(([k, title]) => lineChart(title, data.buckets, data.series[k])));
  $("categories").replaceChildren(barChart(data.category_sessions));
}

async function live() {
  while (api.accessToken) {
    try {
      const resp = await fetch("/admin/live", { headers: { Authorization: `Bearer ${api.accessToken}` } });
      if (!resp.ok || !resp.body) throw new Error(String(resp.status));
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data: ")) continue;
          const figures = JSON.parse(line.slice(6));
          $("live-sessions").textContent = String(figures.active_sessions);
          $("live-sockets").textContent = String(figures.open_sockets);
        }
      }
    } catch { /* reconnect below */ }
    await api.refresh().catch(() => false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const ACTION_TITLES = { dismiss: "Dismiss report", warn: "Warn the reported person", ban: "Ban the reported person" };

// Asks for the reason in an in-page modal dialog (labelled field, focus kept
// inside, Escape cancels); resolves to the trimmed text or null if cancelled.
function askReason(action, who) {
  const dialog = $("reason-dialog"), note = $("reason-note"), error = $("reason-error");
  note.oninput = () => { error.textContent = ""; };
  $("reason-title").textContent = `${ACTION_TITLES[action]}: ${who}`;
  $("reason-confirm").textContent = ACTION_TITLES[action].split(" ")[0];
  $("reason-confirm").className = action === "ban" ? "danger" : "primary";
  note.value = "";
  error.textContent = "";
  return new Promise((resolve) => {
    const done = (value) => {
      $("reason-form").onsubmit = null; $("reason-cancel").onclick = null; dialog.oncancel = null; note.oninput = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $("reason-form").onsubmit = (ev) => {
      ev.preventDefault();
      const text = note.value.trim();
      if (!text) { error.textContent = "Give a reason: it goes into the audit log."; note.focus(); return; }
      done(text);
    };
    $("reason-cancel").onclick = () => done(null);
    dialog.oncancel = (ev) => { ev.preventDefault(); done(null); };
    dialog.showModal();
    note.focus();
  });
}

function actionButton(report, action, who, opener) {
  const b = el("button", { type: "button", "data-action": action, class: action === "ban" ? "danger" : "" }, action[0].toUpperCase() + action.slice(1));
  b.addEventListener("click", async () => {
    const note = await askReason(action, who);
    if (note === null) { b.focus(); return; }
    try {
      await api.request("POST", `/admin/reports/${report.id}/resolve`, { body: { action, note } });
    } catch (e) {
      $("queue-status").textContent = e instanceof ApiError ? e.message : "Could not resolve the report.";
      return;
    }
    $("queue-status").textContent = `Report on ${who} resolved: ${action}.`;
    await loadQueue();
    opener.focus();
  });
  return b;
}

const reportCount = (n) => (n === 1 ? "1 report" : `${n} reports`);

async function loadQueue() {
  const page = await api.request("GET", "/admin/reports?status=open");
  const box = $("queue");
  if (!page.reports.length) { box.replaceChildren(el("p", {}, "No open reports.")); return; }
  box.replaceChildren(...page.reports.map((r) => {
    const who = r.reported.display_name ?? "(no profile)";
    const item = el("article", { class: "report", "data-report": r.id },
      el("h3", {}, `${r.reason}: ${who}`),
      el("p", {}, `${r.details || "(no details)"} — ${reportCount(r.reported.reports_total)} in total, filed `,
        el("time", { datetime: r.created_at }, new Date(r.created_at).toLocaleString())));
    for (const m of r.messages) {
      item.append(el("blockquote", {}, `${m.sender_id === r.reporter_id ? "Reporter" : "Reported"}: ${m.text}`));
    }
    const actions = el("div", { class: "actions", role: "group", "aria-label": `Resolve the report on ${who}` });
    actions.append(...["dismiss", "warn", "ban"].map((a) => actionButton(r, a, who, $("queue-title"))));
    item.append(actions);
    return item;
  }));
}

// The access token's role claim, read only to spare a non-admin a refused
// request: the server checks every admin route itself.
function tokenRole(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).role ?? null;
  } catch { return null; }
}

async function refuse() {
  await api.logout().catch(() => {});
  $("signin-error").textContent = "This account is not an admin: access refused.";
  $("signin").hidden = false;
  $("dashboard").hidden = true;
}

async function enter() {
  if (tokenRole(api.accessToken) !== "admin") { await refuse(); return; }
  try {
    await loadCharts();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 403 || e.status === 401)) { await refuse(); return; }
    throw e;
  }
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  await loadQueue();
  live();
}

$("signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  $("signin-error").textContent = "";
  try {
    await api.login(String(form.get("email")), String(form.get("password")));
  } catch (e) {
    $("signin-error").textContent = e instanceof ApiError ? e.message : "Sign-in failed.";
    return;
  }
  await enter();
});

const storage = globalThis.localStorage ?? null;
trackSessionHint(api, storage);
// Only a browser that signed in before asks the refresh cookie (no 401 otherwise).
resumeSession(api, storage).then((ok) => { if (ok) enter(); }).catch(() => {});
