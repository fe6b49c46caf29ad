// What every console page shares: sign-in (the token is kept in this tab
// only), the API call, the caller's permissions, formatting and links.
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
const TOKEN_KEY = "gridpilot.token";
// The end states come from the server (core.lifecycle), on the <body> element.
const TERMINAL_STATES = (document.body.dataset.terminalStates || "").split(" ");
let ME = null;

function signIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  ME = null;
  document.body.classList.remove("can-dispatch", "can-audit");
  $("#login-msg").textContent = message || "";
  if (!$("#login").open) $("#login").showModal();
}
// The API's answer and, for a list with more, the `before` of its next page.
async function apiPage(path, opts = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) { signIn(); throw new Error("sign in first"); }
  const headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token};
  const r = await fetch("/api/v1" + path, {...opts, headers});
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { signIn(body.message); throw new Error("sign in again"); }
  if (!r.ok) throw new Error(body.message || ("HTTP " + r.status));
  const next = /[?&]before=([^&>]*)[^>]*>; rel="next"/.exec(r.headers.get("link") || "");
  return [body, next ? decodeURIComponent(next[1]) : null];
}
const api = async (path, opts = {}) => (await apiPage(path, opts))[0];
// The server grants permissions (read, dispatch, …) to roles; the console only
// hides what the caller may not do, the server still refuses it.
const can = (permission) => Boolean(ME && ME.permissions.includes(permission));
async function whoami() {
  ME = await api("/me");
  $("#who").textContent = `${ME.principal} (${ME.roles.join(", ") || "no role"})`;
  $("#logout").hidden = false;
  document.body.classList.toggle("can-dispatch", can("dispatch"));
  document.body.classList.toggle("can-audit", can("audit"));
  return ME;
}
// Sign-in for this page. With a token already, the page's data is asked for
// at once, beside /me (one round trip less): load() waits for both.
let SIGNED_IN = Promise.reject(new Error("sign in first"));
SIGNED_IN.catch(() => {});
function startConsole(onSignedIn) {
  $("#login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    SIGNED_IN = whoami();
    try { await SIGNED_IN; $("#login").close(); onSignedIn(); } catch (e) { /* signIn() shows why */ }
  };
  $("#logout").onclick = () => { $("#who").textContent = ""; $("#logout").hidden = true; signIn(); };
  if (sessionStorage.getItem(TOKEN_KEY)) {
    SIGNED_IN = whoami();
    SIGNED_IN.then(() => {}, () => {});  // a refused token: signIn() says so
    onSignedIn();
  } else { signIn(); }
}
// The page's API answers, once the caller is known too (its permissions
// decide which controls are drawn).
const load = (...calls) => Promise.all([SIGNED_IN, ...calls]).then((all) => all.slice(1));
function age(ts) { if (!ts) return "—"; const s = Math.round((Date.now() - new Date(ts)) / 1000); return s + " s"; }
function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "kB", "MB", "GB"]; let i = 0, v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}
function fmt(v, d = 1) { return v === null || v === undefined ? "—" : Number(v).toFixed(d); }
// A time in the browser's zone, UTC on hover.
function when(ts) {
  if (!ts) return "—";
  const t = new Date(ts);
  return `<time datetime="${esc(ts)}" title="${esc(t.toISOString())}">${esc(t.toLocaleString())}</time>`;
}
const dispatchUrl = (id) => "/console/dispatches/" + encodeURIComponent(id);
const dispatchLink = (id) => `<a href="${dispatchUrl(id)}">${esc(id)}</a>`;
const copyButton = (id) => `<button type="button" class="copy" data-copy="${esc(id)}" aria-label="Copy ${esc(id)}">copy</button>`;
const stateCell = (s) => `<span class="state state-${esc(s)}">${esc(s)}</span>`;
const isLive = (d) => !TERMINAL_STATES.includes(d.state);
// An in-page confirmation (the frame's modal <dialog id="confirm">): what will
// happen, in words, and two labelled buttons; Escape or "no" (focused
// first) declines. Resolves true to go on.
function ask(title, lines, yes, no) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-lines").innerHTML = lines.map((l) => `<li>${esc(l)}</li>`).join("");
  $("#confirm-yes").textContent = yes;
  $("#confirm-no").textContent = no;
  return new Promise((done) => {
    dlg.returnValue = "";
    dlg.onclose = () => done(dlg.returnValue === "yes");
    dlg.showModal();
    $("#confirm-no").focus();
  });
}
async function cancelDispatch(id) {
  const yes = await ask(`Cancel dispatch ${id}?`,
    [`Dispatch ${id} is cancelled: the asset returns to its configured default.`], "Cancel dispatch", "Keep it");
  if (!yes) return false;
  await api(`/dispatches/${encodeURIComponent(id)}/cancel`, {method: "POST", body: "{}"});
  return true;
}
document.addEventListener("click", async (ev) => {
  const id = ev.target.dataset && ev.target.dataset.copy; if (!id) return;
  try { await navigator.clipboard.writeText(id); ev.target.textContent = "copied"; }
  catch (e) { window.getSelection().selectAllChildren(ev.target.parentElement); ev.target.textContent = "selected"; }
  setTimeout(() => { ev.target.textContent = "copy"; }, 1500);
});
// Agents: a link to an agent's part of the agents page, and the banner every
// page shows while any agent is offline.
const agentUrl = (id) => "/console/agents#agent-" + encodeURIComponent(id);
function showOfflineBanner(agents) {
  const offline = agents.filter((a) => !a.connected);
  const banner = $("#offline-banner");
  banner.hidden = offline.length === 0;
  banner.innerHTML = offline.length ? `${offline.length} agent${offline.length > 1 ? "s" : ""} offline: `
    + offline.map((a) => `<a href="${agentUrl(a.gateway_id)}">${esc(a.gateway_id)}</a> (${esc(a.site_name)}${a.last_end_reason ? ", " + esc(a.last_end_reason) : ""})`).join(", ") : "";
}

// A site dispatch's children are listed right after it (indented), in id order;
// a child whose parent is not in this page of the list stands on its own.
function treeOrder(dispatches) {
  const ids = new Set(dispatches.map((d) => d.id));
  const children = {};
  for (const d of dispatches) {
    if (d.parent_id && ids.has(d.parent_id)) (children[d.parent_id] ||= []).push(d);
  }
  const rows = [];
  for (const d of dispatches) {
    if (d.parent_id && ids.has(d.parent_id)) continue;
    rows.push([d, false]);
    for (const c of (children[d.id] || []).sort((a, b) => a.id.localeCompare(b.id))) rows.push([c, true]);
  }
  return rows;
}
function dispatchRow([d, child]) {
  const cancel = can("dispatch") && isLive(d) && d.source !== "local"
    ? `<button type="button" class="needs-dispatch" data-cancel="${esc(d.id)}">Cancel</button>` : "";
  return `<tr data-dispatch="${esc(d.id)}"${child ? ` class="child" data-parent="${esc(d.parent_id)}"` : ""}>
    <td class="id">${dispatchLink(d.id)}${copyButton(d.id)}</td>
    <td>${d.asset_id ? assetLink(d.asset_id) : `<a href="${siteUrl(d.site_id)}">${esc(d.site_id)}</a>`}</td><td>${fmt(d.p_kw)}</td><td>${stateCell(d.state)}</td>
    <td>${esc(d.reason || "")}</td><td>${d.source === "local" ? "on site: " : ""}${esc(d.submitted_by)}</td>
    <td>${when(d.created_at)}</td><td>${cancel}</td></tr>`;
}
// A page of one site or asset (/console/<kind>/<id>): its id, shown in
// #<kind>-id, and its "all dispatches" link filtered to it (by `filter`).
function subjectPage(kind, filter) {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  $(`#${kind}-id`).textContent = id;
  $("#all-dispatches").href = `/console/dispatches?${filter}=` + encodeURIComponent(id);
  return id;
}
// Sites and assets: their pages, and each asset's latest sample (null: none yet).
const siteUrl = (id) => "/console/sites/" + encodeURIComponent(id);
const assetUrl = (id) => "/console/assets/" + encodeURIComponent(id);
const assetLink = (id) => `<a href="${assetUrl(id)}">${esc(id)}</a>`;
// Each asset's latest sample (of a site, or all) in one call, by asset id.
async function latestBy(siteId) {
  const found = await api("/telemetry/latest" + (siteId ? "?site_id=" + encodeURIComponent(siteId) : ""));
  return Object.fromEntries(found.map((s) => [s.asset_id, s]));
}
// A sample's points that are not good ({field: "stale"|"bad"}, details.quality), as words.
function quality(sample) {
  if (!sample) return "no data";
  const q = (sample.details && sample.details.quality) || {};
  const bad = Object.entries(q).map(([f, v]) => `${f} ${v}`);
  return bad.length ? bad.join(", ") : "good";
}
// A list of dispatches, whole (head and rows), for a <table id="dispatches">.
function dispatchTable(dispatches) {
  const rows = treeOrder(dispatches).map(dispatchRow).join("") || '<tr><td colspan="8" class="muted">none</td></tr>';
  return `<thead><tr><th>Id</th><th>Target</th><th>P kW</th><th>State</th><th>Reason</th><th>By</th><th>Created</th><th></th></tr></thead><tbody>${rows}</tbody>`;
}
document.addEventListener("click", async (ev) => {
  const id = ev.target.dataset && ev.target.dataset.cancel; if (!id) return;
  try { if (await cancelDispatch(id)) document.dispatchEvent(new Event("gridpilot:changed")); }
  catch (e) { const m = $("#list-msg"); if (m) m.innerHTML = `<span class="bad">${esc(e.message)}</span>`; }
});
// A page: signed in, it draws (refresh), then redraws on what the server's
// event stream says changed and after a change it made itself.
function runPage(refresh) {
  document.addEventListener("gridpilot:changed", () => refresh());
  let following = false;
  startConsole(() => { refresh(); if (!following) { following = true; follow(refresh); } });
  // Only while the stream is down: a slow poll, until it is back.
  setInterval(() => { if (ME && !LIVE) refresh(); }, 10_000);
}
// Live: one event stream per tab (GET /api/v1/events, read with fetch so it
// carries the tab's token like every call); a change redraws the page, at
// most once a second. A broken stream is opened again after 3 s.
let LIVE = false;
async function follow(refresh) {
  const redraw = throttled(() => { if (ME) refresh(); }, 1000);
  for (;;) {
    try {
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) {
        const r = await fetch("/api/v1/events", {headers: {Authorization: "Bearer " + token}});
        if (r.ok) {
          LIVE = true;
          const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            buf += value;
            for (let end; (end = buf.indexOf("\n\n")) >= 0; buf = buf.slice(end + 2)) {
              if (/^event: (changed|tick)$/m.test(buf.slice(0, end))) redraw();
            }
          }
        }
      }
    } catch (e) { /* closed or refused: open it again below */ }
    LIVE = false;
    await new Promise((done) => setTimeout(done, 3000));
  }
}
function throttled(fn, ms) {
  let timer = null, last = 0;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, Math.max(0, ms - (Date.now() - last)));
  };
}
// The page is drawn: say when, and clear the last error.
function drawn() {
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString() + (LIVE ? " · live" : "");
  for (const m of document.querySelectorAll("#load-msg, #list-msg")) m.textContent = "";
}
// A filter form whose values are the page's address (a GET form), so a link
// shows the same view and the back button returns to the last one.
const PARAMS = new URLSearchParams(location.search);
const options = (items) => items.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join("");
function addressForm(sel) {
  // An empty filter is left out of the address (a disabled control is not sent).
  $(sel).onsubmit = () => { for (const el of $(sel).elements) if (el.name && !el.value) el.disabled = true; };
  fillFromAddress(sel);
}
function fillFromAddress(sel) {
  for (const el of $(sel).elements) if (el.name && PARAMS.get(el.name)) el.value = PARAMS.get(el.name);
}
// A page size from a link that the list does not offer is added to it.
function pageSize(sel, fallback) {
  const size = PARAMS.get("limit") || fallback;
  if (![...$(sel).options].some((o) => o.value === size)) $(sel).insertAdjacentHTML("beforeend", options([[size, size]]));
  $(sel).value = size;
}
// The API's query for the address: its filters, times (the browser's zone) as instants.
function addressQuery(names, more, fixed) {
  const q = new URLSearchParams(fixed);
  for (const [name, value] of PARAMS) {
    if (!value || !(names.includes(name) || more.includes(name))) continue;
    if (name === "since" || name === "until") {
      const t = new Date(value);
      if (isNaN(t)) throw new Error(`${name}: not a date and time`);
      q.set(name, t.toISOString());
    } else q.set(name, value);
  }
  return q;
}
