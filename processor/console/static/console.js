/* The console's only script: live alerts (Server-Sent Events), ticking ages, counts.
   Pages work without it; data reaches it through data- attributes (no inline script: the
   Content-Security-Policy forbids it). Text from alerts is only ever set with textContent. */
"use strict";

function ageText(iso) {
  const ms = Date.now() - Date.parse(iso);
  if (!isFinite(ms)) return "";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.floor(h / 24) + " d " + (h % 24) + " h";
}

function tickAges() {
  document.querySelectorAll("[data-since]").forEach((el) => {
    let age = el.querySelector(".age");
    if (!age) {
      age = document.createElement("span");
      age.className = "age";
      el.appendChild(age);
    }
    age.textContent = " · " + ageText(el.dataset.since) + " ago";
  });
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function pathPart(value) { return encodeURIComponent(value); }

function formatWhen(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function alertRow(a) {
  const tr = el("tr", null, "sev-" + a.severity + " new");
  tr.dataset.alertId = a.alert_id;
  tr.dataset.status = a.status;
  const when = el("time", formatWhen(a.occurred_at));
  when.dataset.since = a.occurred_at;
  when.title = a.occurred_at;
  const tdWhen = el("td"); tdWhen.appendChild(when); tr.appendChild(tdWhen);
  const tdSev = el("td"); tdSev.appendChild(el("span", a.severity, "badge sev-" + a.severity)); tr.appendChild(tdSev);
  tr.appendChild(el("td", a.alert_type));
  const tdPartner = el("td");
  const link = el("a", a.partner_id); link.href = "/partners/" + pathPart(a.partner_id);
  tdPartner.appendChild(link); tr.appendChild(tdPartner);
  tr.appendChild(el("td", Number(a.held_points || 0).toLocaleString("en-US"), "num"));
  tr.appendChild(statusCell(a));
  tr.appendChild(el("td", a.evidence, "evidence"));
  const tdOpen = el("td");
  const open = el("a", "open", "open-alert"); open.href = "/alerts/" + pathPart(a.alert_id);
  tdOpen.appendChild(open); tr.appendChild(tdOpen);
  return tr;
}

function statusCell(a) {
  const td = el("td", a.status, "status status-" + a.status);
  if (a.resolved_by) td.appendChild(el("span", " by " + a.resolved_by, "muted"));
  return td;
}

function connect(url, after, onAlert, stateEl) {
  const source = new EventSource(url + "?after=" + encodeURIComponent(after));
  source.addEventListener("open", () => { if (stateEl) { stateEl.textContent = "live"; stateEl.className = "live-state on"; } });
  source.addEventListener("error", () => { if (stateEl) { stateEl.textContent = "reconnecting…"; stateEl.className = "live-state off"; } });
  source.addEventListener("alert", (ev) => { try { onAlert(JSON.parse(ev.data)); } catch (e) { console.error(e); } });
  return source;
}

function setupQueue(table) {
  const body = document.getElementById("queue-body");
  const empty = document.getElementById("queue-empty");
  const f = table.dataset;
  const rows = new Map();
  body.querySelectorAll("tr[data-alert-id]").forEach((tr) => rows.set(tr.dataset.alertId, tr));
  const countedOpen = new Set(Array.from(rows.values()).filter((tr) => tr.dataset.status === "open")
    .map((tr) => tr.dataset.alertId));
  let resync = null;

  function matches(a) {
    return (!f.filterType || a.alert_type === f.filterType) &&
           (!f.filterSeverity || a.severity === f.filterSeverity) &&
           (!f.filterPartner || a.partner_id === f.filterPartner) &&
           (f.filterStatus === "all" || f.filterStatus === a.status);
  }
  function bump(type, delta) {
    const total = document.getElementById("count-open");
    total.textContent = String(Math.max(0, Number(total.textContent) + delta));
    const item = Array.from(document.querySelectorAll("#counts-by-type li")).find((li) => li.dataset.type === type);
    if (item) { const n = item.querySelector("strong"); n.textContent = String(Math.max(0, Number(n.textContent) + delta)); }
  }
  function scheduleResync() {   // ClickHouse (the sink) catches up within seconds: then take its figures
    if (resync) clearTimeout(resync);
    resync = setTimeout(() => {
      fetch("/api/counts", { headers: { Accept: "application/json" } }).then((r) => r.ok ? r.json() : null).then((c) => {
        if (!c) return;
        document.getElementById("count-open").textContent = String(c.open);
        document.querySelectorAll("#counts-by-type li").forEach((li) => {
          li.querySelector("strong").textContent = String(c.open_by_type[li.dataset.type] || 0);
        });
        const oldest = document.getElementById("oldest-open");
        if (c.oldest_open_at) { oldest.dataset.since = c.oldest_open_at; oldest.title = c.oldest_open_at; oldest.textContent = formatWhen(c.oldest_open_at); }
        else { delete oldest.dataset.since; oldest.textContent = "none"; }
      }).catch(() => {});
    }, 4000);
  }
  function onAlert(a) {
    if (a.status === "open" && !countedOpen.has(a.alert_id)) {
      countedOpen.add(a.alert_id);
      bump(a.alert_type, 1);
      const oldest = document.getElementById("oldest-open");
      if (!oldest.dataset.since || Date.parse(a.occurred_at) < Date.parse(oldest.dataset.since)) {
        oldest.dataset.since = a.occurred_at; oldest.title = a.occurred_at; oldest.textContent = formatWhen(a.occurred_at);
      }
    }
    if (a.status !== "open" && countedOpen.has(a.alert_id)) { countedOpen.delete(a.alert_id); bump(a.alert_type, -1); }
    const existing = rows.get(a.alert_id);
    if (matches(a)) {
      const row = alertRow(a);
      if (existing) existing.replaceWith(row); else body.insertBefore(row, body.firstChild);
      rows.set(a.alert_id, row);
    } else if (existing) {
      existing.remove();
      rows.delete(a.alert_id);
    }
    empty.hidden = rows.size > 0;
    tickAges();
    scheduleResync();
  }
  connect(f.liveUrl, f.after, onAlert, document.getElementById("live-state"));
}

function setupAlert(article) {
  const id = article.dataset.alertId;
  connect(article.dataset.liveUrl, article.dataset.after, (a) => {
    if (a.alert_id !== id) return;
    const status = document.getElementById("alert-status");
    status.textContent = a.status;
    status.className = "status-" + a.status;
    document.getElementById("alert-resolved-by").textContent = a.resolved_by ? "by " + a.resolved_by : "";
    document.getElementById("held-points").textContent = Number(a.held_points || 0).toLocaleString("en-US");
    if (a.status !== "open") {
      document.getElementById("resolve-form").hidden = true;
      document.getElementById("resolved-text").hidden = false;
      const notice = document.getElementById("notice");
      if (notice) notice.textContent = "Alert " + a.status + (a.resolved_by ? " by " + a.resolved_by : "") + ": applied by the worker.";
    }
  }, null);
}

function setupResolveButtons(form) {   // one decision per click: no double submit
  form.addEventListener("submit", () => {
    setTimeout(() => form.querySelectorAll("button").forEach((b) => { b.disabled = true; }), 0);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  tickAges();
  setInterval(tickAges, 1000);
  const queue = document.getElementById("queue");
  if (queue) setupQueue(queue);
  const alert = document.getElementById("alert");
  if (alert) setupAlert(alert);
  const form = document.getElementById("resolve-form");
  if (form) setupResolveButtons(form);
});
