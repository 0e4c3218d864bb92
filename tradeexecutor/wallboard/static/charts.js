/* A wallboard page (/wallboard/<page>: the grid of its charts) or one chart (/wallboard/<page>/<chart>).
 *
 * Fetches /api/wallboard/<page> every refresh_seconds and redraws each chart with LineChart.
 * Each chart is a <figure class="chart" data-chart data-updates data-updated-at>; <body
 * data-refreshes="N"> counts finished refreshes.
 */
"use strict";

(() => {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);  // ["wallboard", page, chart?]
  const page = parts[1] || "", only = parts[2] || null;
  let refreshSeconds = 10, refreshes = 0, timer = null;

  function ago(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return seconds < 90 ? `${Math.round(seconds)} s ago` : `${Math.round(seconds / 60)} min ago`;
  }

  function figure(chart) {
    const node = document.createElement("figure");
    node.className = "panel chart";
    node.dataset.chart = chart.chart;
    node.dataset.updates = String(chart.updates);
    node.dataset.updatedAt = chart.updated_at;
    const heading = document.createElement("h2");
    const link = document.createElement("a");
    link.href = chart.path;
    link.textContent = chart.title || chart.chart;
    heading.append(link);
    const meta = document.createElement("p");
    meta.className = "meta";
    const source = chart.source || {};
    meta.textContent = [chart.chart, source.name, source.run, source.status, `updated ${ago(chart.updated_at)}`]
      .filter(Boolean).join(" · ");
    const svg = LineChart.draw(chart.series || [], { width: only ? 1100 : 640, height: only ? 460 : 300,
                                                    label: chart.title || chart.chart });
    const legend = document.createElement("ul");
    legend.className = "legend";
    (chart.series || []).forEach((s, index) => {
      const item = document.createElement("li");
      item.className = `swatch-${index % 4}`;
      item.textContent = `${s.name}${s.axis === "right" ? " (right axis)" : ""}`;
      legend.append(item);
    });
    node.append(heading, meta, svg, legend);
    return node;
  }

  async function refresh() {
    clearTimeout(timer);
    const banner = document.getElementById("banner");
    try {
      const response = await fetch(`/api/wallboard/${encodeURIComponent(page)}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const doc = await response.json();
      refreshSeconds = Number(doc.refresh_seconds) || refreshSeconds;
      const charts = (doc.charts || []).filter((c) => only === null || c.chart === only);
      const grid = document.getElementById("grid");
      grid.classList.toggle("single", only !== null);
      grid.replaceChildren(...charts.map(figure));
      document.querySelector('[data-note="charts"]').hidden = charts.length > 0;
      banner.hidden = true;
      document.getElementById("refresh-note").textContent = `refreshing every ${refreshSeconds} s`;
    } catch (error) {
      banner.textContent = `The wallboard did not answer: ${error.message}. Retrying.`;
      banner.hidden = false;
    } finally {
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      timer = setTimeout(refresh, refreshSeconds * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const title = only ? `${page} / ${only}` : page;
    document.querySelector('[data-field="title"]').textContent = title;
    document.title = `${title} — wallboard`;
    document.querySelector('[data-field="cast-command"]').textContent =
      `tradeexecutor runs cast RUN /wallboard/${page}/${only || "chart1"}`;
    document.getElementById("refresh-now").addEventListener("click", refresh);
    refresh();
  });
})();
