// Small SVG charts for the operator page (no library, no build step; the page's CSP allows
// neither inline styles nor eval, so everything is SVG presentation attributes and classes).
//
//   RatingCharts.line(el, series, opts)        series: [{name, points: [[x, y], ...], color?, dash?}]
//       opts: {title, xLabel, yLabel, time (x in epoch seconds), yMin, yMax, hlines: [{y, label}]}
//   RatingCharts.bars(el, categories, series, opts)   grouped bars; series: [{name, values, color?}]
//   RatingCharts.hbars(el, items, opts)        items: [{label, value (null: none), note?, flag?}]
//       opts: {min, max, threshold: {value, label}, digits}; a flagged item is drawn red, marked
//   RatingCharts.matrix(el, labels, cells, opts)   cells[i][j]: {value, note?} or null
//       opts: {min, max, digits}
//   RatingCharts.color(i)                       the i-th series colour (colour-blind safe)
//
// Each call replaces el's content, sets el.dataset.chart (the kind) and el.dataset.values (the
// numbers drawn, as JSON: tests compare them with the API) and adds a visually hidden table of
// the same numbers for screen readers. Text is set with textContent: names are never HTML.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#7F7F7F"];
  const FLAG = "#C0392B";
  const W = 460, H = 230, MARGIN = { top: 26, right: 12, bottom: 34, left: 44 };
  const M = MARGIN;  // hbars and matrix: no legend

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function color(i) { return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length]; }

  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    return Number(x).toFixed(digits === undefined ? 2 : digits);
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) hi = lo + 1;
    const raw = (hi - lo) / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function clockSeconds(t) {  // ticks under a minute apart: HH:MM alone would repeat
    return clock(Math.round(t)) + ":" + String(new Date(Math.round(t) * 1000).getSeconds()).padStart(2, "0");
  }

  // The frame every chart shares: an <svg> with a title, and a hidden data table.
  function start(el, kind, values, opts, width, height) {
    el.replaceChildren();
    el.classList.add("chart");
    el.dataset.chart = kind;
    el.dataset.values = JSON.stringify(values);
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg" });
    svg.setAttribute("aria-label", opts.title || kind);
    if (opts.title) svg.appendChild(svgEl("text", { x: 4, y: 15, class: "chart-title" }, opts.title));
    el.appendChild(svg);
    return svg;
  }

  function hiddenTable(el, headers, rows) {
    const table = document.createElement("table");
    table.className = "visually-hidden";
    const head = document.createElement("tr");
    headers.forEach((h) => { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
    table.appendChild(head);
    rows.forEach((r) => {
      const tr = document.createElement("tr");
      r.forEach((c) => { const td = document.createElement("td"); td.textContent = String(c); tr.appendChild(td); });
      table.appendChild(tr);
    });
    el.appendChild(table);
  }

  function legend(svg, names, colors, x0, y) {
    let x = x0;
    names.forEach((name, i) => {
      svg.appendChild(svgEl("rect", { x, y: y - 8, width: 10, height: 10, fill: colors[i] }));
      const label = svgEl("text", { x: x + 13, y, class: "chart-legend" }, name);
      svg.appendChild(label);
      x += 24 + 7 * String(name).length;  // swatch, gap, text at ~7 px a character
    });
  }

  function axes(svg, sx, sy, xt, yt, opts, width, height, m) {
    const M = m;
    const g = svgEl("g", { class: "chart-axis" });
    yt.forEach((v) => {
      g.appendChild(svgEl("line", { x1: M.left, x2: width - M.right, y1: sy(v), y2: sy(v), class: "chart-grid" }));
      g.appendChild(svgEl("text", { x: M.left - 4, y: sy(v) + 4, "text-anchor": "end" }, opts.yFormat ? opts.yFormat(v) : v));
    });
    xt.forEach((v) => {  // a label at the right edge ends there (centred, a long one is cut)
      const anchor = sx(v) > width - M.right - 24 ? "end" : "middle";
      g.appendChild(svgEl("text", { x: sx(v), y: height - M.bottom + 14, "text-anchor": anchor }, opts.xFormat ? opts.xFormat(v) : v));
    });
    g.appendChild(svgEl("line", { x1: M.left, x2: width - M.right, y1: height - M.bottom, y2: height - M.bottom, class: "chart-baseline" }));
    if (opts.xLabel) g.appendChild(svgEl("text", { x: width - M.right, y: height - 4, "text-anchor": "end" }, opts.xLabel));
    if (opts.yLabel) g.appendChild(svgEl("text", { x: 4, y: M.top - 8, "text-anchor": "start" }, opts.yLabel));
    svg.appendChild(g);
  }

  function line(el, series, opts) {
    opts = opts || {};
    const width = opts.width || W, height = opts.height || H;
    const values = { series: series.map((s) => ({ name: s.name, points: s.points })) };
    const svg = start(el, "line", values, opts, width, height);
    const keyed = series.length > 1 || opts.legend;
    const M = { ...MARGIN, top: keyed ? 50 : MARGIN.top + 8 };
    const pts = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    let x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
    if (!(x1 > x0)) x1 = x0 + 1;
    const y0 = opts.yMin !== undefined ? opts.yMin : Math.min(0, ...ys);
    let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(1, ...ys);
    if (!(y1 > y0)) y1 = y0 + 1;
    const sx = (x) => M.left + (x - x0) / (x1 - x0) * (width - M.left - M.right);
    const sy = (y) => height - M.bottom - (y - y0) / (y1 - y0) * (height - M.top - M.bottom);
    let xt = niceTicks(x0, x1, 5);
    if (opts.time) xt = niceTicks(x0 / 60, x1 / 60, 5).map((m) => m * 60);  // whole minutes
    const short = opts.time && xt.length > 1 && xt[1] - xt[0] < 60;  // a span of a minute or two
    const xFormat = opts.time ? (short ? clockSeconds : clock) : opts.xFormat;
    axes(svg, sx, sy, xt.filter((x) => x >= x0 && x <= x1), niceTicks(y0, y1, 4), { ...opts, xFormat }, width, height, M);
    (opts.hlines || []).forEach((h) => {
      svg.appendChild(svgEl("line", { x1: M.left, x2: width - M.right, y1: sy(h.y), y2: sy(h.y), class: "chart-threshold" }));
      if (h.label) svg.appendChild(svgEl("text", { x: width - M.right, y: sy(h.y) - 3, "text-anchor": "end", class: "chart-note" }, h.label));
    });
    series.forEach((s, i) => {
      const c = s.color || color(i);
      let d = "", pen = false;
      s.points.forEach(([x, y]) => {
        if (y === null || y === undefined) { pen = false; return; }
        d += (pen ? "L" : "M") + sx(x).toFixed(1) + " " + sy(y).toFixed(1);
        pen = true;
      });
      const path = svgEl("path", { d, fill: "none", stroke: c, "stroke-width": s.width || 2 });
      if (s.dash) path.setAttribute("stroke-dasharray", "5 3");
      path.dataset.series = s.name;
      svg.appendChild(path);
      if (s.points.length === 1 && s.points[0][1] !== null) {
        svg.appendChild(svgEl("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: c }));
      }
    });
    if (keyed) legend(svg, series.map((s) => s.name), series.map((s, i) => s.color || color(i)), 4, 32);
    hiddenTable(el, ["series", "x", "y"], series.flatMap((s) => s.points.map((p) => [s.name, opts.time ? clock(p[0]) : p[0], fmt(p[1], 3)])));
  }

  function bars(el, categories, series, opts) {
    opts = opts || {};
    const width = opts.width || W, height = opts.height || H;
    const values = { categories, series: series.map((s) => ({ name: s.name, values: s.values })) };
    const svg = start(el, "bars", values, opts, width, height);
    const M = { ...MARGIN, top: series.length > 1 ? 50 : MARGIN.top + 8 };
    const top = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
    const y1 = opts.yMax !== undefined ? opts.yMax : top;
    const sy = (y) => height - M.bottom - y / y1 * (height - M.top - M.bottom);
    const band = (width - M.left - M.right) / Math.max(1, categories.length);
    const bw = band * 0.8 / Math.max(1, series.length);
    const yt = niceTicks(0, y1, 4).filter((v) => v <= y1);
    axes(svg, () => 0, sy, [], yt, opts, width, height, M);
    categories.forEach((c, j) => {
      svg.appendChild(svgEl("text", { x: M.left + band * (j + 0.5), y: height - M.bottom + 14, "text-anchor": "middle", class: "chart-axis-text" }, c));
      series.forEach((s, i) => {
        const v = s.values[j] || 0;
        const x = M.left + band * j + band * 0.1 + bw * i;
        const rect = svgEl("rect", { x: x.toFixed(1), y: sy(v).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: Math.max(0, sy(0) - sy(v)).toFixed(1), fill: s.color || color(i) });
        rect.appendChild(svgEl("title", {}, `${s.name}, ${c}: ${opts.format ? opts.format(v) : v}`));
        svg.appendChild(rect);
      });
    });
    if (series.length > 1) legend(svg, series.map((s) => s.name), series.map((s, i) => s.color || color(i)), 4, 32);
    hiddenTable(el, ["series", ...categories], series.map((s) => [s.name, ...s.values]));
  }

  function hbars(el, items, opts) {
    opts = opts || {};
    const width = opts.width || W, row = 22;
    const height = opts.height || M.top + 18 + row * Math.max(1, items.length);
    const svg = start(el, "hbars", { items }, opts, width, height);
    const lo = opts.min !== undefined ? opts.min : 0, hi = opts.max !== undefined ? opts.max : 1;
    const left = 90, right = 150;
    const sx = (v) => left + (v - lo) / (hi - lo) * (width - left - right);
    items.forEach((it, i) => {
      const y = M.top + 8 + row * i;
      const g = svgEl("g", { class: it.flag ? "chart-row flagged" : "chart-row" });
      g.dataset.label = it.label;
      g.appendChild(svgEl("text", { x: left - 6, y: y + 13, "text-anchor": "end", class: it.flag ? "chart-flag-text" : "" }, it.label));
      g.appendChild(svgEl("rect", { x: left, y, width: sx(hi) - left, height: row - 6, class: "chart-track" }));
      if (it.value !== null && it.value !== undefined) {
        g.appendChild(svgEl("rect", { x: left, y, width: Math.max(1, sx(it.value) - left), height: row - 6, fill: it.flag ? FLAG : (it.color || color(i)) }));
      }
      const note = fmt(it.value, opts.digits) + (it.note ? " " + it.note : "");
      g.appendChild(svgEl("text", { x: sx(hi) + 6, y: y + 13, class: it.flag ? "chart-flag-text" : "chart-note" }, note));
      svg.appendChild(g);
    });
    if (opts.threshold) {
      const x = sx(opts.threshold.value);
      svg.appendChild(svgEl("line", { x1: x, x2: x, y1: M.top + 2, y2: height - 4, class: "chart-threshold" }));
      if (opts.threshold.label) svg.appendChild(svgEl("text", { x: x + 3, y: M.top + 4, class: "chart-note" }, opts.threshold.label));
    }
    hiddenTable(el, ["", "value", ""], items.map((it) => [it.label, fmt(it.value, opts.digits), it.note || ""]));
  }

  function matrix(el, labels, cells, opts) {
    opts = opts || {};
    const n = labels.length, left = 80, top = M.top + 6, size = Math.min(56, Math.floor(((opts.width || W) - left - 10) / Math.max(1, n)));
    const width = opts.width || W, height = opts.height || top + size * n + 30;
    const values = { labels, values: cells.map((r) => r.map((c) => (c ? c.value : null))) };
    const svg = start(el, "matrix", values, opts, width, height);
    const lo = opts.min !== undefined ? opts.min : 0, hi = opts.max !== undefined ? opts.max : 1;
    labels.forEach((name, i) => {
      svg.appendChild(svgEl("text", { x: left - 6, y: top + size * i + size / 2 + 4, "text-anchor": "end", class: "chart-axis-text" }, name));
      svg.appendChild(svgEl("text", { x: left + size * i + size / 2, y: top + size * n + 14, "text-anchor": "middle", class: "chart-axis-text" }, name));
      labels.forEach((_, j) => {
        const cell = cells[i][j];
        const x = left + size * j, y = top + size * i;
        const has = cell && cell.value !== null && cell.value !== undefined;
        const share = has ? Math.max(0, Math.min(1, (cell.value - lo) / (hi - lo))) : 0;
        // white (low agreement) to blue (high): a single hue, readable in grey too
        const shade = (a, b) => Math.round(a + (b - a) * share);
        const fill = has ? `rgb(${shade(247, 8)},${shade(251, 81)},${shade(255, 156)})` : "#eeeeee";
        const rect = svgEl("rect", { x, y, width: size - 2, height: size - 2, fill });
        rect.appendChild(svgEl("title", {}, `${labels[i]} / ${labels[j]}: ${has ? fmt(cell.value, opts.digits) : "no shared clips"}${cell && cell.note ? " (" + cell.note + ")" : ""}`));
        svg.appendChild(rect);
        if (has) {
          const text = svgEl("text", { x: x + size / 2 - 1, y: y + size / 2 + 1, "text-anchor": "middle", class: share > 0.55 ? "chart-cell light" : "chart-cell" }, fmt(cell.value, opts.digits));
          svg.appendChild(text);
          if (cell.note) svg.appendChild(svgEl("text", { x: x + size / 2 - 1, y: y + size / 2 + 13, "text-anchor": "middle", class: share > 0.55 ? "chart-cell-note light" : "chart-cell-note" }, cell.note));
        }
      });
    });
    hiddenTable(el, ["", ...labels], labels.map((name, i) => [name, ...cells[i].map((c) => (c ? fmt(c.value, opts.digits) : "–"))]));
  }

  window.RatingCharts = { line, bars, hbars, matrix, color, fmt };
})();
