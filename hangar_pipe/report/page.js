"use strict";
// Draws the report from the JSON in #data: the runs table (sortable; `#sort=COLUMN:desc` in the
// address sorts it too), metrics per data commit, the curves of the runs ticked in the table,
// the confusion matrices and the pipeline graph, all as HTML and SVG. No network, no library.
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf"];

function make(tag, attrs, parent, text) {
  const svg = ["svg", "g", "line", "polyline", "circle", "rect", "text", "path", "defs", "marker", "title"];
  const e = svg.includes(tag) ? document.createElementNS(NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || v === "") return "";
  return typeof v === "number" ? String(Number(v.toPrecision(5))) : String(v);
}

// -- the runs table ----------------------------------------------------------------------------
const hasCurves = id => Object.values(D.curves).some(byRun => id in byRun);
const selected = new Set(D.runs.filter(r => hasCurves(r.id)).slice(0, 3).map(r => r.id));
const COLUMNS = [
  {key: "sel", label: "curves"}, {key: "id", label: "run"}, {key: "when", label: "when"},
  {key: "data", label: "data commit"}, {key: "experiment", label: "experiment"},
  {key: "overrides", label: "overrides"},
  ...D.metrics.map((m, i) => ({key: i, label: m, num: true})),
  {key: "status", label: "exit", num: true}, {key: "seconds", label: "took (s)", num: true},
  {key: "ran", label: "ran"}];
let sort = {label: "when", desc: true};
let hash = location.hash;
try { hash = decodeURIComponent(hash); } catch (e) { /* a malformed address: as it is */ }
const asked = /sort=([^:&]+)(?::(asc|desc))?/.exec(hash);
if (asked) sort = {label: asked[1], desc: asked[2] === "desc"};

const cell = (r, c) => (typeof c.key === "number" ? r.values[c.key] : r[c.key]);

function sortedRuns() {
  const c = COLUMNS.find(col => col.label === sort.label) || COLUMNS[2];
  const rows = D.runs.slice();
  rows.sort((a, b) => {
    const x = cell(a, c), y = cell(b, c);
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const order = c.num ? x - y : String(x).localeCompare(String(y));
    return sort.desc ? -order : order;
  });
  return rows;
}

function drawTable() {
  const table = document.getElementById("runs");
  table.textContent = "";
  const head = make("tr", {}, make("thead", {}, table));
  for (const c of COLUMNS) {
    const th = make("th", {"data-column": c.label}, head, c.label);
    if (c.label === sort.label) th.setAttribute("aria-sort", sort.desc ? "descending" : "ascending");
    th.addEventListener("click", () => {
      sort = {label: c.label, desc: sort.label === c.label ? !sort.desc : !!c.num};
      drawTable();
    });
  }
  const body = make("tbody", {}, table);
  for (const r of sortedRuns()) {
    const tr = make("tr", {"data-run": r.id, class: r.status === 0 ? "ok" : "failed"}, body);
    for (const c of COLUMNS) {
      const td = make("td", {class: c.num ? "num" : ""}, tr);
      if (c.key === "sel") {
        if (!hasCurves(r.id)) continue;
        const box = make("input", {type: "checkbox"}, td);
        box.checked = selected.has(r.id);
        box.addEventListener("change", () => {
          box.checked ? selected.add(r.id) : selected.delete(r.id);
          drawCurves();
        });
      } else {
        td.textContent = c.key === "id" ? r.id.slice(0, 15) : fmt(cell(r, c));
      }
    }
  }
  if (!D.runs.length) make("caption", {class: "empty"}, table, "No runs recorded yet.");
}

// -- charts ------------------------------------------------------------------------------------
function ticks(lo, hi, n) {
  if (lo === hi) { lo -= 1; hi += 1; }
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const nice = [1, 2, 5, 10].map(m => m * step).find(s => (hi - lo) / s <= n) || step * 10;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + nice * 1e-9; t += nice) out.push(Number(t.toPrecision(6)));
  return out;
}

// series: [{name, color, points: [[x, y]], line: bool}]; categories: x labels when x is an index
function chart(parent, title, series, xLabel, categories) {
  const W = 540, H = 300, L = 56, R = 12, T = 26, B = 42 + 14 * Math.ceil(series.length / 2);
  const svg = make("svg", {width: W, height: H + B - 42, class: "chart", "data-title": title}, parent);
  make("text", {x: L, y: 16, "font-weight": "bold"}, svg, title);
  const xs = series.flatMap(s => s.points.map(p => p[0])), ys = series.flatMap(s => s.points.map(p => p[1]));
  if (!xs.length) return svg;
  const low = a => a.reduce((m, v) => (v < m ? v : m), Infinity);
  const high = a => a.reduce((m, v) => (v > m ? v : m), -Infinity);
  let [x0, x1] = [low(xs), high(xs)], [y0, y1] = [low(ys), high(ys)];
  if (categories) [x0, x1] = [-0.5, categories.length - 0.5];
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const px = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const py = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - 40);
  for (const t of ticks(y0, y1, 5)) {
    make("line", {class: "grid", x1: L, x2: W - R, y1: py(t), y2: py(t)}, svg);
    make("text", {x: L - 6, y: py(t) + 4, "text-anchor": "end"}, svg, fmt(t));
  }
  const xt = categories ? categories.map((_, i) => i) : ticks(x0, x1, 6);
  for (const t of xt) {
    make("text", {x: px(t), y: H - 24, "text-anchor": "middle"}, svg, categories ? categories[t] : fmt(t));
  }
  make("line", {class: "axis", x1: L, x2: W - R, y1: H - 40, y2: H - 40}, svg);
  make("line", {class: "axis", x1: L, x2: L, y1: T, y2: H - 40}, svg);
  make("text", {x: (L + W) / 2, y: H - 8, "text-anchor": "middle"}, svg, xLabel);
  series.forEach((s, i) => {
    const g = make("g", {"data-series": s.name}, svg);
    if (s.line !== false && s.points.length > 1) {
      make("polyline", {class: "curve", stroke: s.color, points: s.points.map(p => `${px(p[0])},${py(p[1])}`).join(" ")}, g);
    }
    for (const p of s.points) {
      make("title", {}, make("circle", {class: "point", cx: px(p[0]), cy: py(p[1]), r: s.line === false ? 3.5 : 2.5,
                                         fill: s.color, "fill-opacity": s.line === false ? 0.5 : 1}, g),
           `${s.name}: ${fmt(p[1])}`);
    }
    const lx = L + (i % 2) * 240, ly = H + 4 + 14 * Math.floor(i / 2);
    make("rect", {x: lx, y: ly - 8, width: 10, height: 10, fill: s.color}, svg);
    make("text", {x: lx + 14, y: ly + 1}, svg, s.name.length > 36 ? s.name.slice(0, 35) + "…" : s.name);
  });
  return svg;
}

function drawCommits() {
  const box = document.getElementById("commits");
  const {order, lines, dots} = D.commits;
  if (!order.length) { make("p", {class: "empty"}, box, "No run has read Hangar data yet."); return; }
  D.metrics.forEach((m, i) => {
    const series = [];
    if (lines[m]) series.push({name: `${m} (latest run)`, color: COLORS[i % 10],
                               points: order.filter(c => c in lines[m]).map(c => [order.indexOf(c), lines[m][c]])});
    const mine = dots.filter(d => d.metric === m);
    if (mine.length) series.push({name: `${m} (experiment points)`, color: "#888", line: false,
                                  points: mine.map(d => [order.indexOf(d.commit), d.value])});
    if (series.length) chart(box, m, series, "data commit", order);
  });
}

const PANELS = [["loss", c => /loss/i.test(c)], ["accuracy", c => /acc/i.test(c)], ["value", () => true]];

function drawCurves() {
  const box = document.getElementById("curves");
  box.textContent = "";
  const files = Object.keys(D.curves);
  if (!files.length) { make("p", {class: "empty"}, box, "No curve plots in the cache yet (declare plots: files)."); return; }
  const runs = D.runs.filter(r => selected.has(r.id));
  for (const file of files) {
    const taken = new Set();
    for (const [panel, test] of PANELS) {
      const series = [];
      runs.forEach((r, i) => {
        const table = D.curves[file][r.id];
        if (!table) return;
        table.header.slice(1).forEach((col, j) => {
          if (!test(col) || taken.has(col + "\u0000" + r.id)) return;
          taken.add(col + "\u0000" + r.id);
          const pts = table.rows.filter(row => typeof row[0] === "number" && typeof row[j + 1] === "number")
            .map(row => [row[0], row[j + 1]]);
          series.push({name: `${r.overrides || r.id.slice(0, 15)}: ${col}`, color: COLORS[(i * 3 + j) % 10], points: pts});
        });
      });
      if (series.length) chart(box, `${file}: ${panel}`, series, D.curves[file][runs.find(r => D.curves[file][r.id]).id].header[0]);
    }
  }
  if (!runs.length) make("p", {class: "empty"}, box, "Tick runs in the table to draw their curves.");
}

function drawMatrices() {
  const box = document.getElementById("matrices");
  if (!D.matrices.length) { make("p", {class: "empty"}, box, "No confusion matrix among the plot files."); return; }
  for (const m of D.matrices) {
    const n = m.labels.length, size = Math.max(18, Math.min(36, 360 / n)), L = 60, T = 40;
    const svg = make("svg", {width: L + n * size + 20, height: T + m.actual.length * size + 40, class: "matrix"}, box);
    make("text", {x: L, y: 16, "font-weight": "bold"}, svg, m.name);
    const peak = m.counts.flat().reduce((a, v) => (v > a ? v : a), 1);
    m.counts.forEach((row, i) => {
      make("text", {x: L - 6, y: T + i * size + size / 2 + 4, "text-anchor": "end"}, svg, m.actual[i]);
      row.forEach((v, j) => {
        const shade = Math.round(255 - 200 * v / peak);
        make("rect", {class: "cell", x: L + j * size, y: T + i * size, width: size - 1, height: size - 1,
                      fill: `rgb(${shade},${shade + 20 > 255 ? 255 : shade + 20},255)`}, svg);
        make("text", {x: L + j * size + size / 2, y: T + i * size + size / 2 + 4, "text-anchor": "middle",
                      style: `fill: ${v > peak / 2 ? "#fff" : "#222"}`}, svg, String(v));
      });
    });
    m.labels.forEach((lab, j) => make("text", {x: L + j * size + size / 2, y: T - 6, "text-anchor": "middle"}, svg, lab));
  }
}

function drawGraph() {
  const box = document.getElementById("graph");
  const {nodes, edges} = D.graph;
  const BW = 150, BH = 30, GX = 30, GY = 44;
  const at = {};
  for (const nd of nodes) at[nd.name] = {x: 10 + nd.slot * (BW + GX), y: 10 + nd.layer * (BH + GY)};
  const width = 20 + Math.max(1, ...nodes.map(nd => nd.slot + 1)) * (BW + GX);
  const height = 20 + Math.max(1, ...nodes.map(nd => nd.layer + 1)) * (BH + GY);
  const svg = make("svg", {width, height, class: "graph"}, box);
  const marker = make("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                                 orient: "auto-start-reverse"}, make("defs", {}, svg));
  make("path", {d: "M0,0 L10,5 L0,10 z", fill: "#999"}, marker);
  for (const [a, b] of edges) {
    const p = at[a], q = at[b];
    make("path", {class: "edge", d: `M${p.x + BW / 2},${p.y + BH} C${p.x + BW / 2},${p.y + BH + GY / 2} ` +
                  `${q.x + BW / 2},${q.y - GY / 2} ${q.x + BW / 2},${q.y}`}, svg);
  }
  for (const nd of nodes) {
    const g = make("g", {class: "node", "data-stage": nd.name}, svg);
    make("rect", {x: at[nd.name].x, y: at[nd.name].y, width: BW, height: BH}, g);
    make("text", {x: at[nd.name].x + BW / 2, y: at[nd.name].y + BH / 2 + 4, "text-anchor": "middle"}, g,
         nd.name.length > 22 ? nd.name.slice(0, 21) + "…" : nd.name);
    make("title", {}, g, `${nd.name} (${nd.uses})`);
  }
}

document.getElementById("title").textContent = D.title;
document.getElementById("made").textContent = `Made ${D.made} by hpipe report; ${D.runs.length} runs.`;
drawTable();
drawCommits();
drawCurves();
drawMatrices();
drawGraph();
document.body.setAttribute("data-rendered", "yes");
