// The dispatch form: per asset by default, a site's split as an option.
// The server decides (limits, the split, asset_id winning over site_id); this
// checks as you type from the asset's limits, shows the server's preview as a
// table and, before a submit, asks about what the dispatch will do.
"use strict";
let ASSETS = {}, SITES = {};
const dForm = () => $("#dispatch-form");
function targets(sites, assets) {
  const first = !Object.keys(ASSETS).length && assets.length;
  ASSETS = Object.fromEntries(assets.map((a) => [a.id, a]));
  SITES = Object.fromEntries(sites.map((s) => [s.id, s]));
  if (!first) return;
  $("#d-asset").insertAdjacentHTML("beforeend", assets.map((a) => `<option value="${esc(a.id)}">${esc(a.id)} (${esc(a.asset_type)})</option>`).join(""));
  $("#d-site").insertAdjacentHTML("beforeend", sites.map((s) => `<option value="${esc(s.id)}">${esc(s.name)} (${esc(s.id)})</option>`).join(""));
  $("#d-asset").value = assets[0].id;  // per asset by default
  check();
}
function body(extra = {}) {
  const b = {p_kw: Number($("#d-p").value), duration_s: Number($("#d-duration").value), ...extra};
  if ($("#d-asset").value) b.asset_id = $("#d-asset").value;
  if ($("#d-site").value) b.site_id = $("#d-site").value;
  return b;
}
// As you type: the asset's limits (the server checks them again), the site's
// capacity (beyond it, part is not allocated), and which target wins.
function check() {
  const asset = ASSETS[$("#d-asset").value], site = SITES[$("#d-site").value];
  const p = $("#d-p"), v = Number(p.value), notes = [];
  let problem = "";
  if (!asset && !site) problem = "Choose an asset or a site.";
  else if (p.value === "" || !Number.isFinite(v)) problem = "P kW: a number.";
  else if (asset && (v < asset.p_min_kw || v > asset.p_max_kw)) problem = `P kW: outside ${asset.id}'s limits ${fmt(asset.p_min_kw)} … ${fmt(asset.p_max_kw)} kW.`;
  else if (!asset && (v < site.p_min_kw || v > site.p_max_kw)) notes.push(`beyond the site's capacity ${fmt(site.p_min_kw)} … ${fmt(site.p_max_kw)} kW: part will not be allocated`);
  const d = $("#d-duration");
  if (!problem && !(Number.isInteger(Number(d.value)) && Number(d.value) >= 1)) problem = "Duration s: a whole number of seconds, at least 1.";
  if (asset && site) notes.unshift(`both an asset and a site: the asset wins, this sends a per-asset dispatch to ${asset.id}`);
  p.setCustomValidity(problem.startsWith("P kW") ? problem : "");
  d.setCustomValidity(problem.startsWith("Duration") ? problem : "");
  $("#d-hint").innerHTML = problem ? `<span class="bad">${esc(problem)}</span>`
    : notes.map((n) => `<span class="warn">Note: ${esc(n)}.</span>`).join(" ");
  $("#submit").disabled = $("#preview").disabled = Boolean(problem);
  return !problem;
}
function splitTable(p) {
  const rows = p.allocations.map((a) => `<tr data-asset="${esc(a.asset_id)}"><td>${esc(a.asset_id)}</td><td>${fmt(a.weight_kw)}</td>
    <td>${fmt(a.bound_kw)}</td><td class="share">${fmt(a.p_kw)}</td><td>${a.clamped ? "yes" : "no"}</td></tr>`).join("");
  $("#split-summary").innerHTML = `${esc(p.policy)}: ${fmt(p.allocated_kw)} of ${fmt(p.target_kw)} kW allocated${p.unallocated_kw ? `, <span class="bad">${fmt(p.unallocated_kw)} kW not</span>` : ""}`;
  return `<thead><tr><th>Asset</th><th>Weight kW</th><th>Bound kW</th><th>Share kW</th><th>Clamped</th></tr></thead><tbody>${rows}</tbody>`;
}
async function preview() {
  const p = await api("/dispatches/preview", {method: "POST", body: JSON.stringify(body({accept_partial: true}))});
  $("#split-table").innerHTML = splitTable(p);
  return p;
}
// What a submit will do that the operator should agree to first, in words.
async function consequences(p) {
  const said = [];
  const ids = p.allocations.map((a) => a.asset_id);
  const where = p.asset_id ? `asset_id=${encodeURIComponent(p.asset_id)}` : `site_id=${encodeURIComponent(p.site_id)}`;
  const [live, agents] = await Promise.all([api(`/dispatches?${where}&limit=200`), api("/agents")]);
  const superseded = live.filter((d) => isLive(d) && d.asset_id && ids.includes(d.asset_id));
  for (const d of superseded) said.push(`It supersedes live dispatch ${d.id} (${d.asset_id}, ${fmt(d.p_kw)} kW, ${d.state}).`);
  if (p.unallocated_kw) said.push(`Part of the target cannot be allocated: ${fmt(p.unallocated_kw)} of ${fmt(p.target_kw)} kW; the site gets ${fmt(p.allocated_kw)} kW.`);
  const siteId = p.site_id || (ASSETS[p.asset_id] || {}).site_id;
  for (const a of agents.filter((g) => g.site_id === siteId && !g.connected)) {
    said.push(`The agent ${a.gateway_id} of ${a.site_name} is offline: the dispatch waits for it and expires if it is not delivered in time.`);
  }
  return said;
}
async function submit(ev) {
  ev.preventDefault();
  if (!check()) return;
  try {
    const p = await preview();
    if (p.refused && !p.unallocated_kw) throw new Error(p.refused);
    const said = await consequences(p);
    const what = p.asset_id ? `asset ${p.asset_id}` : `site ${p.site_id}`;
    if (said.length && !await ask(`Dispatch ${fmt(p.target_kw)} kW to ${what}?`, said, "Dispatch anyway", "Don't send")) {
      $("#msg").textContent = "Not sent."; return;
    }
    const d = await api("/dispatches", {method: "POST", body: JSON.stringify(body({accept_partial: Boolean(p.unallocated_kw)}))});
    $("#msg").innerHTML = `Dispatch ${dispatchLink(d.id)} ${esc(d.state)}` + (d.warnings.length ? ` (${esc(d.warnings.join("; "))})` : "");
    document.dispatchEvent(new Event("gridpilot:changed"));
  } catch (e) { $("#msg").innerHTML = `<span class="bad">${esc(e.message)}</span>`; }
}
for (const el of ["#d-asset", "#d-site", "#d-p", "#d-duration"]) $(el).addEventListener("input", check);
$("#preview").onclick = () => preview().then(() => { $("#msg").textContent = ""; })
  .catch((e) => { $("#msg").innerHTML = `<span class="bad">${esc(e.message)}</span>`; });
dForm().onsubmit = submit;
