/* A small SVG line chart, no library: time on x, series on a left and a right y axis.
 *
 *   const svg = LineChart.draw(series, { width: 640, height: 300 });
 *
 * series: [{name, axis: "left"|"right", t: [epoch ms], v: [number|null]}]. Series on one axis
 * share its scale; a null value breaks the line. The chart is drawn once per call (a few
 * thousand points at most: senders downsample), with <path class="line line-N" data-series>
 * per series whose data-points says how many points it drew.
 */
"use strict";

window.LineChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { top: 12, right: 64, bottom: 28, left: 64 };

  function el(name, attributes, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function extent(values) {
    let low = Infinity, high = -Infinity;
    for (const value of values) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      if (value < low) low = value;
      if (value > high) high = value;
    }
    if (low === Infinity) return null;
    if (low === high) { low -= Math.abs(low) * 0.01 || 1; high += Math.abs(high) * 0.01 || 1; }
    const margin = (high - low) * 0.05;
    return [low - margin, high + margin];
  }

  const compact = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4 });

  function date(ms, span) {
    const d = new Date(ms);
    const iso = d.toISOString();
    return span < 2 * 86400000 ? iso.slice(5, 16).replace("T", " ") : iso.slice(0, 10);
  }

  function draw(series, options) {
    const width = (options && options.width) || 640, height = (options && options.height) || 300;
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": (options && options.label) || "chart" });
    const plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
    const times = series.flatMap((s) => [s.t[0], s.t[s.t.length - 1]]).filter((t) => typeof t === "number");
    if (!times.length) {
      svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
      return svg;
    }
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t0 === t1) { t0 -= 1; t1 += 1; }
    const ranges = {
      left: extent(series.filter((s) => s.axis !== "right").flatMap((s) => s.v)),
      right: extent(series.filter((s) => s.axis === "right").flatMap((s) => s.v)),
    };
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * plotW;
    const y = (value, axis) => {
      const [low, high] = ranges[axis];
      return PAD.top + (1 - (value - low) / (high - low)) * plotH;
    };
    for (let i = 0; i <= 4; i++) {
      const gy = PAD.top + (plotH * i) / 4;
      svg.append(el("line", { x1: PAD.left, x2: PAD.left + plotW, y1: gy, y2: gy, class: "grid" }));
      for (const axis of ["left", "right"]) {
        const range = ranges[axis];
        if (!range) continue;
        const value = range[1] - ((range[1] - range[0]) * i) / 4;
        const tx = axis === "left" ? PAD.left - 6 : PAD.left + plotW + 6;
        svg.append(el("text", { x: tx, y: gy + 4, "text-anchor": axis === "left" ? "end" : "start", class: "axis" },
                      compact.format(value)));
      }
    }
    svg.append(el("text", { x: PAD.left, y: height - 8, class: "axis" }, date(t0, t1 - t0)));
    svg.append(el("text", { x: PAD.left + plotW, y: height - 8, "text-anchor": "end", class: "axis" }, date(t1, t1 - t0)));
    series.forEach((s, index) => {
      const axis = s.axis === "right" ? "right" : "left";
      if (!ranges[axis]) return;
      let d = "", drawn = 0, pen = false;
      for (let i = 0; i < s.t.length; i++) {
        const value = s.v[i];
        if (typeof value !== "number") { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(s.t[i]).toFixed(1)} ${y(value, axis).toFixed(1)}`;
        pen = true;
        drawn += 1;
      }
      const path = el("path", { d, class: `line line-${index % 4}` });
      path.dataset.series = s.name;
      path.dataset.points = String(drawn);
      svg.append(path);
    });
    return svg;
  }

  return { draw };
})();
