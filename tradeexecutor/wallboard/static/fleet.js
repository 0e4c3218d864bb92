/* The fleet page: fetches /api/executors and /api/wallboard, draws the table, sorts it, refreshes.
 *
 * Every refresh_seconds (from /api/executors; 10 s by default) both documents are fetched again
 * and the table redrawn in place; the sort the user chose (click a column header, again to
 * reverse) is kept in the URL's hash, so it survives a reload. <body data-refreshes="N"> counts
 * finished refreshes and data-generated-at names the poll shown. Rows are <tr data-name>; cells
 * are <td data-column data-value> holding the raw value, so what is shown can be checked against
 * the JSON.
 */
"use strict";

(() => {
  const REQUEST_TIMEOUT_MS = 8000;
  const COLUMNS = ["name", "status", "healthy", "mode", "rate_share_used", "equity", "equity_change", "open_positions",
                   "last_cycle_at", "next_cycle_at", "crash_reason"];
  let refreshSeconds = 10;
  let refreshes = 0;
  let timer = null;
  let rows = [];
  let sort = readSort();

  function readSort() {
    const match = /sort=([a-z_]+)(?:&dir=(asc|desc))?/.exec(location.hash);
    if (match && COLUMNS.includes(match[1])) return { key: match[1], dir: match[2] || "asc" };
    return { key: "name", dir: "asc" };
  }

  async function getJson(path) {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch(path, { signal: controller.signal, cache: "no-store",
                                           headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${path} answered HTTP ${response.status}`);
      return await response.json();
    } finally {
      clearTimeout(timeout);
    }
  }

  // -- formatting ------------------------------------------------------------------------------

  const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function percent(fraction) {
    return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)} %`;
  }

  function relative(iso) {
    if (!iso) return "";
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    if (!Number.isFinite(seconds)) return String(iso);
    const size = Math.abs(seconds);
    const text = size < 90 ? `${Math.round(size)} s` : size < 5400 ? `${Math.round(size / 60)} min`
      : size < 172800 ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} d`;
    return seconds < 0 ? `${text} ago` : `in ${text}`;
  }

  const STATUS_CLASS = { running: "good", complete: "", stopped: "", starting: "warn", new: "warn",
                         error: "bad", unreachable: "bad", refused: "warn" };

  function cell(row, column) {
    const td = document.createElement("td");
    const value = row[column];
    td.dataset.column = column;
    td.dataset.value = value === null || value === undefined ? "" : String(value);
    if (column === "name") {
      const link = document.createElement("a");
      link.href = row.dashboard;
      link.textContent = row.name;
      link.rel = "noreferrer";
      td.append(link);
      const sub = document.createElement("span");
      sub.className = "sub";
      sub.textContent = [row.strategy_name, row.source === "runs" ? "run" : null].filter(Boolean).join(" · ");
      td.append(sub);
    } else if (column === "status") {
      const badge = document.createElement("span");
      badge.className = `badge ${STATUS_CLASS[value] ?? ""}`;
      badge.textContent = value;
      td.append(badge);
      const notes = [row.paused ? "paused" : null, row.safe_mode ? "safe mode" : null,
                     row.problem, row.stale && row.last_seen_at ? `last seen ${relative(row.last_seen_at)}` : null];
      const text = notes.filter(Boolean).join("; ");
      if (text) {
        const sub = document.createElement("span");
        sub.className = "sub";
        sub.dataset.field = "problem";
        sub.textContent = text;
        td.append(sub);
      }
    } else if (column === "healthy") {
      const badge = document.createElement("span");
      badge.className = `badge ${value === true ? "good" : value === false ? "bad" : ""}`;
      badge.textContent = value === true ? "healthy" : value === false ? "unhealthy" : "unknown";
      if (row.health_reasons && row.health_reasons.length) badge.title = row.health_reasons.join("; ");
      td.append(badge);
    } else if (column === "mode") {
      td.textContent = value || "–";
      if (row.prices) {
        const sub = document.createElement("span");
        sub.className = "sub";
        sub.dataset.field = "prices";
        sub.textContent = row.prices;
        td.append(sub);
      }
    } else if (column === "rate_share_used") {
      // A paper or live executor's exchange connection: how much of its share of the address's budget it used.
      td.className = "num";
      if (typeof value === "number" && typeof row.rate_share === "number") {
        td.textContent = `${percent(value)} of ${percent(row.rate_share)} share`;
        const sub = document.createElement("span");
        sub.className = "sub";
        sub.dataset.field = "venue";
        const held = typeof row.held_back_seconds === "number" && row.held_back_seconds > 0
          ? `held back ${Math.ceil(row.held_back_seconds)} s` : null;
        sub.textContent = [typeof row.exchange_requests === "number" ? `${row.exchange_requests} requests` : null,
                           typeof row.clock_offset_ms === "number" ? `clock ${row.clock_offset_ms > 0 ? "+" : ""}${Math.round(row.clock_offset_ms)} ms` : null,
                           held].filter(Boolean).join(" · ");
        td.append(sub);
      } else {
        td.textContent = "–";
      }
    } else if (column === "equity") {
      td.className = "num";
      td.textContent = typeof value === "number" ? money.format(value) : "–";
    } else if (column === "equity_change") {
      td.className = "num" + (typeof value === "number" ? (value > 0 ? " up" : value < 0 ? " down" : "") : "");
      td.textContent = typeof value === "number" ? `${value > 0 ? "+" : ""}${(value * 100).toFixed(2)} %` : "–";
    } else if (column === "open_positions") {
      td.className = "num";
      td.textContent = typeof value === "number" ? String(value) : "–";
    } else if (column === "last_cycle_at" || column === "next_cycle_at") {
      const time = document.createElement("time");
      if (value) {
        time.dateTime = value;
        time.title = value;
        time.textContent = relative(value);
      } else {
        time.textContent = "–";
      }
      td.append(time);
    } else if (column === "crash_reason") {
      td.className = "crash";
      td.textContent = value || "";
    } else {
      td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    }
    if (td.textContent === "–") td.classList.add("missing");
    return td;
  }

  // -- sorting ---------------------------------------------------------------------------------

  function compare(a, b) {
    const x = a[sort.key], y = b[sort.key];
    const missingX = x === null || x === undefined || x === "", missingY = y === null || y === undefined || y === "";
    if (missingX || missingY) return missingX === missingY ? 0 : missingX ? 1 : -1;  // missing last, both ways
    let order;
    if (typeof x === "number" && typeof y === "number") order = x - y;
    else if (typeof x === "boolean" && typeof y === "boolean") order = Number(x) - Number(y);
    else if (sort.key.endsWith("_at")) order = Date.parse(x) - Date.parse(y);
    else order = String(x).localeCompare(String(y), undefined, { sensitivity: "base", numeric: true });
    return sort.dir === "desc" ? -order : order;
  }

  function sorted() {
    return rows.map((row, index) => [row, index])
      .sort(([a, i], [b, j]) => compare(a, b) || String(a.name).localeCompare(String(b.name)) || i - j)
      .map(([row]) => row);
  }

  function setSort(key) {
    sort = { key, dir: sort.key === key && sort.dir === "asc" ? "desc" : "asc" };
    history.replaceState(null, "", `#sort=${sort.key}&dir=${sort.dir}`);
    draw();
  }

  // -- drawing ---------------------------------------------------------------------------------

  function draw() {
    const table = document.getElementById("executors");
    for (const th of table.querySelectorAll("th[data-sort]")) {
      if (th.dataset.sort === sort.key) th.setAttribute("aria-sort", sort.dir === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    const body = table.tBodies[0];
    const fresh = document.createElement("tbody");
    for (const row of sorted()) {
      const tr = document.createElement("tr");
      tr.dataset.name = row.name;
      tr.dataset.status = row.status;
      if (row.stale) tr.className = "stale";
      for (const column of COLUMNS) tr.append(cell(row, column));
      fresh.append(tr);
    }
    body.replaceWith(fresh);
    document.querySelector('[data-note="executors"]').hidden = rows.length > 0;
  }

  function drawPages(index) {
    const list = document.getElementById("pages");
    list.replaceChildren();
    for (const page of index.pages || []) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = page.path;
      link.textContent = page.page;
      item.append(link, document.createTextNode(": "));
      page.charts.forEach((chart, i) => {
        const a = document.createElement("a");
        a.href = chart.path;
        a.textContent = chart.chart;
        a.title = chart.title || "";
        if (i) item.append(document.createTextNode(", "));
        item.append(a);
      });
      list.append(item);
    }
    document.querySelector('[data-note="pages"]').hidden = (index.pages || []).length > 0;
  }

  function drawSummary(doc) {
    const counts = {};
    for (const row of rows) counts[row.status] = (counts[row.status] || 0) + 1;
    const parts = Object.entries(counts).sort().map(([status, n]) => `${n} ${status}`);
    document.getElementById("summary").textContent =
      `${rows.length} executor${rows.length === 1 ? "" : "s"}` + (parts.length ? `: ${parts.join(", ")}` : "");
    const broken = (doc.sources || []).filter((s) => s.error);
    const sources = document.getElementById("sources");
    sources.hidden = broken.length === 0;
    sources.textContent = broken.map((s) => `${s.source} ${s.runs_dir || ""}: ${s.error}`).join("; ");
  }

  async function refresh() {
    clearTimeout(timer);
    const banner = document.getElementById("banner");
    try {
      const [doc, index] = await Promise.all([getJson("/api/executors"), getJson("/api/wallboard")]);
      refreshSeconds = Number(doc.refresh_seconds) || refreshSeconds;
      rows = doc.executors || [];
      document.body.dataset.generatedAt = doc.generated_at || "";
      draw();
      drawPages(index);
      drawSummary(doc);
      banner.hidden = true;
      const polled = doc.generated_at ? `polled ${relative(doc.generated_at)}` : "waiting for the first poll";
      document.getElementById("refresh-note").textContent = `${polled}; refreshing every ${refreshSeconds} s`;
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
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => setSort(th.dataset.sort));
    }
    document.getElementById("refresh-now").addEventListener("click", refresh);
    refresh();
  });
})();
