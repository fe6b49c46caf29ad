// The console's two charts, as SVG strings drawn here (no library, no CDN):
// a stacked bar of a site's power now, and an asset's history with its
// dispatches as setpoint steps. Each mark carries data-* attributes with the
// value it draws, so a test can read the chart against the API.
"use strict";
const PALETTE = ["#2f6fbf", "#e0a100", "#2b9e5b", "#b5477d", "#6b5bd2", "#c0612b", "#3a9fb0"];
const n2 = (v) => Number(v).toFixed(2);

// items: [{id, p_kw}] → one bar, exports (p > 0) stacked right of zero,
// imports left of it, each asset its colour (the legend uses the same).
function stackedPower(items) {
  const W = 600, H = 44, mid = W / 2;
  const pos = items.filter((i) => i.p_kw > 0).reduce((s, i) => s + i.p_kw, 0);
  const neg = items.filter((i) => i.p_kw < 0).reduce((s, i) => s - i.p_kw, 0);
  const scale = (mid - 4) / Math.max(pos, neg, 1e-9);
  let right = mid, left = mid;
  const rects = items.map((it, k) => {
    if (!it.p_kw) return "";
    const w = Math.abs(it.p_kw) * scale;
    const x = it.p_kw > 0 ? right : left - w;
    if (it.p_kw > 0) right += w; else left -= w;
    return `<rect class="seg" data-asset="${esc(it.id)}" data-p="${it.p_kw}" x="${n2(x)}" y="6" width="${n2(w)}" height="${H - 12}" fill="${PALETTE[k % PALETTE.length]}"><title>${esc(it.id)}: ${fmt(it.p_kw)} kW</title></rect>`;
  }).join("");
  return `<svg class="stacked" viewBox="0 0 ${W} ${H}" role="img" aria-label="Power by asset: import left of the line, export right">
    ${rects}<line x1="${mid}" y1="0" x2="${mid}" y2="${H}" stroke="#1d2430" stroke-width="1.5"/></svg>`;
}
const legend = (items) => items.map((it, k) =>
  `<span class="key"><svg viewBox="0 0 10 10" aria-hidden="true"><rect width="10" height="10" fill="${PALETTE[k % PALETTE.length]}"/></svg>${esc(it.id)} ${fmt(it.p_kw)} kW</span>`).join(" ");

// An asset's history over [t0, t1] (ms): buckets [{bucket, p_kw_avg, soc_pct_avg}],
// steps [{id, from, to, p_kw}] (ms); the power axis spans the asset's limits.
function historyChart(buckets, steps, t0, t1, limits) {
  const W = 720, H = 260, L = 48, R = 40, T = 10, B = 26;
  const ps = buckets.map((b) => b.p_kw_avg).filter((v) => v !== null);
  const lo = Math.min(limits.p_min_kw, 0, ...ps, ...steps.map((s) => s.p_kw));
  const hi = Math.max(limits.p_max_kw, 0, ...ps, ...steps.map((s) => s.p_kw));
  const span = hi - lo || 1;
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (p) => T + (H - T - B) * (hi - p) / span;
  const ySoc = (s) => T + (H - T - B) * (100 - s) / 100;
  const pts = buckets.filter((b) => b.p_kw_avg !== null).map((b) => [new Date(b.bucket).getTime(), b.p_kw_avg, b.bucket]);
  const socs = buckets.filter((b) => b.soc_pct_avg !== null).map((b) => [new Date(b.bucket).getTime(), b.soc_pct_avg, b.bucket]);
  const line = (cls, xs, fy) => xs.length ? `<polyline class="${cls}" fill="none" points="${xs.map(([t, v]) => `${n2(x(t))},${n2(fy(v))}`).join(" ")}"/>` : "";
  const dots = (cls, xs, fy, unit) => xs.map(([t, v, iso]) => `<circle class="${cls}" data-t="${esc(iso)}" data-v="${v}" cx="${n2(x(t))}" cy="${n2(fy(v))}" r="2.5"><title>${esc(new Date(iso).toLocaleString())}: ${fmt(v)} ${unit}</title></circle>`).join("");
  const stepPaths = steps.map((s) => {
    const a = x(Math.max(s.from, t0)), b = x(Math.min(s.to, t1));
    return `<path class="setpoint" data-dispatch="${esc(s.id)}" data-p="${s.p_kw}" d="M${n2(a)},${n2(y(0))} V${n2(y(s.p_kw))} H${n2(b)} V${n2(y(0))}"><title>${esc(s.id)}: ${fmt(s.p_kw)} kW</title></path>`;
  }).join("");
  const tick = (p) => `<text x="${L - 4}" y="${n2(y(p) + 4)}" text-anchor="end">${fmt(p, 0)}</text><line class="grid" x1="${L}" x2="${W - R}" y1="${n2(y(p))}" y2="${n2(y(p))}"/>`;
  const label = (t, anchor) => `<text x="${n2(x(t))}" y="${H - 8}" text-anchor="${anchor}">${esc(new Date(t).toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"}))}</text>`;
  const socAxis = socs.length ? `<text x="${W - R + 4}" y="${n2(ySoc(100) + 4)}">100%</text><text x="${W - R + 4}" y="${n2(ySoc(0) + 4)}">0%</text>` : "";
  return `<svg class="history" viewBox="0 0 ${W} ${H}" role="img" aria-label="Power (kW) and state of charge over time, with dispatch setpoints">
    ${[...new Set([lo, 0, hi])].map(tick).join("")}${socAxis}${label(t0, "start")}${label(t1, "end")}
    ${stepPaths}${line("p-line", pts, y)}${line("soc-line", socs, ySoc)}${dots("p-pt", pts, y, "kW")}${dots("soc-pt", socs, ySoc, "%")}</svg>`;
}
