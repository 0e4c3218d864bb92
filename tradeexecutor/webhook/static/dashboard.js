/* The executor dashboard: polls the webhook's JSON endpoints and fills the page. No libraries, no build.
 *
 * Every request uses a URL relative to the page, so a reverse-proxy prefix and the basic-auth
 * credentials the browser already holds both apply. Each endpoint is loaded and drawn on its
 * own: a 404 shows "not available yet" in its section, any other failure a short message, and
 * nothing one endpoint returns can stop the others from being shown.
 *
 * Figures carry data-field="<name>" and, once known, data-value="<raw value>" (numbers exactly as
 * the JSON had them), so tests and scrapers need not parse the formatted text. After each refresh
 * <body> gets data-refreshes="<count>"; after the first, a "dashboard-ready" performance mark, and
 * "dashboard-chart" once the chart first shows.
 * ?refresh=<seconds> changes the 10 s refresh period (1 to 3600); ?journal=all shows routine journal
 * events (cycles that decided nothing, revaluations) too. While the executor runs, /status is also
 * asked every 2 s whether a new chart was drawn, and the page refreshes as soon as one was.
 *
 * Operator actions (pause, resume, close one position, close all, reload parameters) are buttons
 * shown only when GET /control says this executor takes them (auth configured, a loop running)
 * and the executor runs; each opens a confirmation saying what will happen in this mode before
 * anything is sent, and the executor's answer (done, or refused with the reason) shows under them.
 */
"use strict";

(() => {
  const DEFAULT_REFRESH_SECONDS = 10;
  const REQUEST_TIMEOUT_MS = 8000;
  const ACTION_TIMEOUT_MS = 30000; // the executor waits up to 10 s for its loop to do an action
  const CHART_WATCH_SECONDS = 2; // how often a running executor is asked whether a new chart exists
  const JOURNAL_FETCH = 100; // journal entries read per refresh, for the timeline
  const JOURNAL_TAIL = 20; // journal entries shown
  // The journal shows what an operator cares about (orders, fills, triggers, crashes, state changes):
  // entries at level info and above. Routine ones — cycles that decided nothing, revaluations — are
  // journaled at debug and shown only while "Show routine events too" is ticked (?journal=all ticks it).
  const journalRoutine = () => document.getElementById("journal-routine").checked;

  /** Journal events shown on the timeline: event name → [label, kind used for styling]. */
  const TIMELINE_EVENTS = {
    stop_requested: ["Stop requested", "stop_requested"],
    stopped: ["Stopped", "stopped"],
    executor_stopped: ["Stopped", "stopped"],
    complete: ["Completed", "complete"],
    executor_complete: ["Completed", "complete"],
    paused: ["Paused", "paused"],
    resumed: ["Resumed", "resumed"],
    safe_mode: ["Safe mode on", "safe_mode"],
    risk_limit_hit: ["Risk limit hit", "safe_mode"],
    risk_pause_lifted: ["Risk pause lifted", "resumed"],
    crashed: ["Crashed", "crash"],
  };

  /** Position columns in display order: [key, heading, kind]; the first key found of each group wins. */
  const POSITION_COLUMNS = [
    [["id", "position_id"], "#", "int"],
    [["symbol", "instrument", "pair"], "Symbol", "text"],
    [["direction", "side"], "Side", "text"],
    [["quantity", "size"], "Quantity", "number"],
    [["average_price", "entry_price", "open_price"], "Entry", "price"],
    [["last_price", "price", "mark_price"], "Last", "price"],
    [["market_value", "value"], "Value", "money"],
    [["unrealised_pnl", "unrealized_pnl"], "Unrealised P&L", "signed-money"],
    [["stop_loss"], "Stop", "price"],
    [["take_profit"], "Target", "price"],
    [["opened_at"], "Opened (UTC)", "short-time"],
  ];

  const refreshSeconds = (() => {
    const asked = Number(new URLSearchParams(window.location.search).get("refresh"));
    return Number.isFinite(asked) && asked >= 1 && asked <= 3600 ? asked : DEFAULT_REFRESH_SECONDS;
  })();

  // -- formatting ------------------------------------------------------------------------------

  const formats = {
    money: new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
    price: new Intl.NumberFormat(undefined, { maximumSignificantDigits: 8 }),
    number: new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 }),
    int: new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 }),
    pct: new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 2, maximumFractionDigits: 2 }),
    ratio: new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
  };

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const signed = (value, text) => (value > 0 ? "+" + text : text);

  /** An ISO time as "YYYY-MM-DD HH:MM:SS UTC"; anything unparseable as it came. */
  function formatTime(value) {
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function formatSeconds(value) {
    if (Math.abs(value) < 120) return formats.ratio.format(value) + " s";
    if (Math.abs(value) < 7200) return formats.ratio.format(value / 60) + " min";
    if (Math.abs(value) < 172800) return formats.ratio.format(value / 3600) + " h";
    return formats.ratio.format(value / 86400) + " days";
  }

  /** The text shown for a value of a kind; null when the value is missing or of the wrong type. */
  function format(value, kind) {
    if (value === null || value === undefined || value === "") return null;
    switch (kind) {
      case "money": case "price": case "number": case "int": case "pct": case "ratio":
        return isNumber(value) ? formats[kind].format(value) : null;
      case "signed-money":
        return isNumber(value) ? signed(value, formats.money.format(value)) : null;
      case "signed-pct":
        return isNumber(value) ? signed(value, formats.pct.format(value)) : null;
      case "seconds":
        return isNumber(value) ? formatSeconds(value) : null;
      case "time":
        return formatTime(value);
      case "short-time": // "YYYY-MM-DD HH:MM", for table cells
        return formatTime(value).replace(/:\d\d UTC$/, "");
      default:
        return typeof value === "object" ? JSON.stringify(value) : String(value);
    }
  }

  // -- DOM helpers -----------------------------------------------------------------------------

  const field = (name) => document.querySelector(`[data-field="${name}"]`);
  const note = (name) => document.querySelector(`[data-note="${name}"]`);

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** A <time> element for an ISO timestamp. */
  function timeElement(value) {
    return element("time", { datetime: String(value), title: String(value) }, formatTime(value));
  }

  /** Show a figure: formatted text, raw value in data-value, "missing" style when unknown. */
  function setFigure(name, value) {
    const node = field(name);
    if (!node) return;
    const kind = node.dataset.kind || "text";
    const text = format(value, kind);
    node.classList.remove("positive", "negative", "missing");
    if (text === null) {
      node.textContent = "–";
      node.dataset.value = "";
      node.classList.add("missing");
      node.title = "Not available yet";
      return;
    }
    node.textContent = text;
    node.dataset.value = typeof value === "object" ? JSON.stringify(value) : String(value);
    node.title = kind === "time" ? String(value) : "";
    if (kind.startsWith("signed-") && isNumber(value) && value !== 0) {
      node.classList.add(value > 0 ? "positive" : "negative");
    }
  }

  function setText(name, value) {
    const node = field(name);
    if (!node) return;
    node.textContent = value === null || value === undefined ? "" : String(value);
    node.dataset.value = node.textContent;
  }

  /** Show or hide a section's note. */
  function setNote(name, text) {
    const node = note(name);
    if (!node) return;
    node.hidden = !text;
    node.textContent = text || "";
  }

  /** The message a failed request leaves in its section. */
  function failureText(result) {
    if (result.status === 404) return "Not available yet.";
    if (result.status === 401) return "Not signed in: reload the page to enter the executor's credentials.";
    if (result.status === 0) return `Could not load: ${result.error}.`;
    return `Could not load (HTTP ${result.status}): ${result.error}`;
  }

  // -- fetching --------------------------------------------------------------------------------

  /** A URL relative to the page, without any user:password the page's own URL carried (fetch refuses those). */
  function endpoint(path) {
    const url = new URL(path, document.baseURI);
    url.username = "";
    url.password = "";
    return url.href;
  }

  /** GET a JSON endpoint: {ok: true, data} or {ok: false, status (0 = no answer), error}; never throws. */
  const getJson = (path) => requestJson(path);

  /** POST a JSON body (none when null) to an endpoint; the answer as getJson gives it. */
  const postJson = (path, body) => requestJson(path, "POST", body, ACTION_TIMEOUT_MS);

  async function requestJson(path, method = "GET", body = null, timeout = REQUEST_TIMEOUT_MS) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    try {
      const headers = { Accept: "application/json" };
      if (body !== null) headers["Content-Type"] = "application/json";
      const response = await fetch(endpoint(path), {
        method,
        headers,
        body: body === null ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      let answer = null;
      if ((response.headers.get("Content-Type") || "").includes("json")) {
        try { answer = await response.json(); } catch (_error) { answer = null; }
      }
      if (!response.ok) {
        const message = answer && typeof answer.error === "string" ? answer.error : response.statusText;
        return { ok: false, status: response.status, error: message || `HTTP ${response.status}` };
      }
      if (answer === null) return { ok: false, status: response.status, error: "the answer is not JSON" };
      return { ok: true, status: response.status, data: answer };
    } catch (error) {
      const message = error && error.name === "AbortError" ? "no answer in time" : String((error && error.message) || error);
      return { ok: false, status: 0, error: message };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The list inside a JSON answer that is either a list or an object holding one. */
  function listOf(data, ...keys) {
    if (Array.isArray(data)) return data;
    if (data && typeof data === "object") {
      for (const key of keys) if (Array.isArray(data[key])) return data[key];
    }
    return null;
  }

  // -- sections --------------------------------------------------------------------------------

  let lastStatus = null;
  let lastStatusAt = null;
  let lastCrashKey = null;
  let chartVersion = null;

  function renderStatus(result) {
    const banner = document.getElementById("banner");
    if (!result.ok) {
      let text;
      if (result.status === 401) text = failureText(result);
      else if (result.status === 404) text = "Status not available yet.";
      else if (result.status === 0) text = `Cannot reach the executor: ${result.error}.`;
      else text = `The executor answered HTTP ${result.status}: ${result.error}.`;
      if (lastStatusAt) text += ` Showing what it reported at ${formatTime(lastStatusAt.toISOString())}.`;
      banner.textContent = text;
      banner.hidden = false;
      if (!lastStatus) {
        setText("status", "unknown");
        field("status").dataset.value = "unknown";
      }
      return null;
    }
    banner.hidden = true;
    banner.textContent = "";
    const status = result.data;
    lastStatus = status;
    lastStatusAt = new Date();

    const name = status.strategy_name || "Trade executor";
    setText("strategy_name", name);
    setText("executor_id", status.executor_id ? `Executor ${status.executor_id}` : "");
    setText("mode", status.mode ? `${status.mode} mode${status.prices ? ` · ${status.prices}` : ""}` : "");
    const version = status.version || {};
    const commit = typeof version.git_commit === "string" ? ` (${version.git_commit.slice(0, 10)})` : "";
    setText("version", version.package ? `v${version.package}${commit}` : "");
    setText("status", status.status || "unknown");
    document.title = `${status.status || "unknown"} · ${name} · Trade executor`;

    for (const key of ["cycles", "completed_cycle", "next_cycle_at", "last_refreshed_at",
                       "market_data_feed_lag", "position_trigger_checks"]) {
      setFigure(key, status[key]);
    }

    const flags = field("flags");
    flags.replaceChildren();
    const flag = (text) => flags.append(element("span", { className: "flag" }, text));
    if (status.paused) flag("Paused by an operator");
    if (status.safe_mode) flag(status.safe_mode_reason ? `Safe mode: ${status.safe_mode_reason}` : "Safe mode");
    if (status.risk_paused) flag(status.risk_pause_reason ? `Risk pause: ${status.risk_pause_reason}` : "Risk pause");
    if (status.status === "running" && status.executor_running === false) flag("Loop not running");

    renderCrash(status);
    renderChart(status);
    return status;
  }

  function renderPortfolio(status, summary) {
    // Figures with updated_at null are the zeros RunState starts with, not a measurement.
    const given = status && status.portfolio && typeof status.portfolio === "object" ? status.portfolio : null;
    const portfolio = given && !("updated_at" in given && given.updated_at === null) ? given : null;
    const p = portfolio || {};
    const s = summary || {};
    setNote("portfolio", portfolio ? "" : status ? "Not available yet." : "");
    setFigure("portfolio_value", p.portfolio_value);
    setFigure("cash", p.cash);
    setFigure("unrealised_pnl", p.unrealised_pnl);
    setFigure("open_positions", p.open_positions ?? s.open_positions);
    setFigure("fees_paid", p.fees_paid ?? s.fees_paid);
    setFigure("fee_currency", p.fee_currency ?? s.fee_currency);

    setFigure("orders_planned", p.orders_planned);
    setFigure("orders_filled", p.orders_filled ?? s.trade_count);
    setFigure("orders_rejected", p.orders_rejected ?? s.rejected_trade_count);
    setNote("orders", portfolio || summary ? "" : "Not available yet.");
  }

  function renderSummary(result, status) {
    let summary = null;
    if (result.ok && result.data && typeof result.data === "object") summary = result.data;
    else if (status && status.summary_statistics && Object.keys(status.summary_statistics).length) {
      summary = status.summary_statistics; // the same figures, as /status carries them
    }
    setNote("summary", summary ? "" : failureText(result));
    const s = summary || {};
    for (const key of ["final_equity", "total_return", "cagr", "max_drawdown", "sharpe", "win_rate",
                       "trade_count", "buy_and_hold_return"]) {
      setFigure(key, s[key]);
    }
    return summary;
  }

  function renderFrames(list, frames, omitted) {
    list.replaceChildren();
    const rows = Array.isArray(frames) ? frames : [];
    const gapAt = omitted ? Math.floor(rows.length / 2) : -1;
    rows.forEach((frame, index) => {
      if (index === gapAt) list.append(element("li", { className: "omitted" }, `… ${omitted} frames omitted …`));
      const where = element("span", { className: "where" },
        `File "${frame.filename}", line ${frame.lineno}, in ${frame.name}`);
      list.append(element("li", {}, where, frame.line ? element("code", { className: "line" }, frame.line) : null));
    });
    if (!rows.length) list.append(element("li", { className: "omitted" }, "No frames recorded."));
  }

  function renderCrash(status) {
    const panel = document.getElementById("crash");
    const exception = status.exception && typeof status.exception === "object" ? status.exception : null;
    if (!exception) {
      panel.hidden = true;
      lastCrashKey = null;
      return;
    }
    const key = JSON.stringify([exception, status.crashed_at, status.crash_count, status.status]);
    panel.hidden = false;
    if (key === lastCrashKey) return; // keep the reader's open/closed details and scroll position
    lastCrashKey = key;

    document.getElementById("crash-title").textContent =
      status.status === "error" ? "The strategy crashed" : "Last recorded crash";
    setText("crash-class", exception.class || exception.class_name || "unknown exception");
    setText("crash-message", exception.message || "(no message)");
    const at = field("crashed_at");
    at.textContent = status.crashed_at ? formatTime(status.crashed_at) : "an unknown time";
    if (status.crashed_at) at.setAttribute("datetime", status.crashed_at);
    setText("crash_count", status.crash_count ?? "");
    const frames = Array.isArray(exception.frames) ? exception.frames : [];
    setText("crash-frame-count", frames.length);
    renderFrames(field("crash-frames"), frames, exception.frames_omitted);

    const chain = field("crash-chain");
    chain.replaceChildren();
    const links = Array.isArray(exception.chain) ? exception.chain : [];
    links.forEach((link, index) => {
      const relation = link.relation === "cause" ? "Caused by" : "Raised while handling";
      const list = element("ol", { className: "frames" });
      renderFrames(list, link.frames, link.frames_omitted);
      const count = Array.isArray(link.frames) ? link.frames.length : 0;
      chain.append(element("div", { className: "chain-link", "data-chain-index": String(index), "data-relation": link.relation || "" },
        element("p", { className: "relation" }, relation),
        element("p", {},
          element("code", { className: "crash-class", "data-field": `crash-chain-class-${index}`, "data-value": link.class || "" },
            link.class || link.class_name || "?"),
          " ",
          element("span", { "data-field": `crash-chain-message-${index}`, "data-value": link.message || "" },
            link.message || "(no message)")),
        element("details", {}, element("summary", {}, `Traceback (${count} frames)`), list)));
    });
  }

  function renderChart(status) {
    const updated = status.visualisation_updated_at;
    const figure = document.querySelector(".chart");
    watchChart(status);
    if (!updated) {
      figure.hidden = true;
      chartVersion = null;
      setNote("chart", "Not available yet: no chart has been drawn.");
      return;
    }
    const stale = field("visualisation_stale");
    stale.hidden = !status.visualisation_stale;
    stale.textContent = status.visualisation_stale ? `Out of date: ${status.visualisation_stale}.` : "";
    if (updated === chartVersion) return;
    chartVersion = updated;
    const version = encodeURIComponent(updated);
    field("chart-dark").srcset = `visualisation?type=large&theme=dark&format=svg&v=${version}`;
    const image = field("chart");
    image.dataset.version = updated;
    image.src = `visualisation?type=large&theme=light&format=svg&v=${version}`;
  }

  let chartWatch = null;

  /**
   * While the executor runs, look every CHART_WATCH_SECONDS for a new chart (its
   * visualisation_updated_at in /status) and refresh the whole page at once when one exists: the
   * first cycle's chart shows within seconds of being drawn, not at the next refresh, and chart and
   * figures change together.
   */
  function watchChart(status) {
    clearTimeout(chartWatch);
    if (!["starting", "running"].includes(status.status) || refreshSeconds <= CHART_WATCH_SECONDS) return;
    chartWatch = setTimeout(async () => {
      const result = busy ? null : await getJson("status");
      const latest = result && result.ok ? result.data : status;
      if (latest.visualisation_updated_at && latest.visualisation_updated_at !== chartVersion && !busy) refresh();
      else watchChart(latest);
    }, CHART_WATCH_SECONDS * 1000);
  }

  let chartMarked = false;

  function chartLoaded() {
    const image = field("chart");
    if (!chartMarked && window.performance && performance.mark) {
      chartMarked = true;
      performance.mark("dashboard-chart");
    }
    document.querySelector(".chart").hidden = false;
    setNote("chart", "");
    const caption = field("visualisation_updated_at");
    if (image.dataset.version) {
      caption.textContent = formatTime(image.dataset.version);
      caption.setAttribute("datetime", image.dataset.version);
    }
  }

  function chartFailed() {
    document.querySelector(".chart").hidden = true;
    chartVersion = null; // try again on the next refresh
    setNote("chart", "Not available yet: the chart could not be loaded.");
  }

  /** Fill in entry price, value and unrealised P&L from quantity, cost basis and last price when a row lacks them. */
  function derivePositionFigures(row) {
    if (!row || typeof row !== "object") return;
    const { quantity, cost_basis: cost, last_price: last } = row;
    if (!isNumber(quantity) || quantity === 0) return;
    if (row.average_price === undefined && isNumber(cost)) row.average_price = cost / quantity;
    if (!isNumber(last)) return;
    if (row.market_value === undefined) row.market_value = quantity * last;
    if (row.unrealised_pnl === undefined && isNumber(cost)) row.unrealised_pnl = quantity * last - cost;
  }

  function renderPositions(result, closable) {
    const table = field("positions");
    const rows = result.ok ? listOf(result.data, "positions", "items", "results", "rows", "data") : null;
    if (!result.ok || rows === null) {
      table.hidden = true;
      setNote("positions", result.ok ? "Not available yet: unexpected answer." : failureText(result));
      table.dataset.count = "";
      return;
    }
    rows.forEach(derivePositionFigures);
    table.dataset.count = String(rows.length);
    if (!rows.length) {
      table.hidden = true;
      setNote("positions", "No open positions.");
      return;
    }
    let columns = POSITION_COLUMNS
      .map(([keys, heading, kind]) => [keys.find((key) => rows.some((row) => row && row[key] !== undefined && row[key] !== null)), heading, kind])
      .filter(([key]) => key !== undefined);
    if (!columns.length) { // an unknown shape: show its scalar fields as they are
      columns = Object.keys(rows[0] || {})
        .filter((key) => rows[0][key] === null || typeof rows[0][key] !== "object")
        .slice(0, 8)
        .map((key) => [key, key, "text"]);
    }
    const numeric = (kind) => !["text", "time", "short-time"].includes(kind);
    table.tHead.rows[0].replaceChildren(...columns.map(([, heading, kind]) =>
      element("th", { scope: "col", className: numeric(kind) ? "num" : null }, heading)));
    if (closable) table.tHead.rows[0].append(element("th", { scope: "col" }, element("span", { className: "skip" }, "Action")));
    table.tBodies[0].replaceChildren(...rows.map((row) => {
      const id = row && (row.id ?? row.position_id);
      const cells = columns.map(([key, , kind]) => {
        const value = row ? row[key] : undefined;
        const text = format(value, kind);
        return element("td", {
          className: kind.endsWith("time") ? "time" : numeric(kind) ? "num" : null,
          "data-column": key,
          "data-value": value === undefined || value === null ? "" : String(value),
        }, text === null ? "–" : text);
      });
      if (closable && id !== undefined && id !== null) {
        cells.push(element("td", {}, element("button", { type: "button", className: "danger", "data-close": String(id),
          "data-symbol": row.symbol || "" }, "Close")));
      }
      return element("tr", { "data-position-id": id }, ...cells);
    }));
    table.hidden = false;
    setNote("positions", "");
  }

  /** Journal entries (oldest first) from a /logs answer, or null. */
  function journalEntries(result) {
    if (!result.ok) return null;
    const entries = listOf(result.data, "entries", "events", "items", "logs", "journal");
    if (entries === null) return null;
    const rows = entries.filter((entry) => entry && typeof entry === "object");
    // Sort by time (stable, so entries of one instant keep their order).
    return rows
      .map((entry, index) => [Date.parse(entry.at), index, entry])
      .sort((a, b) => ((a[0] || 0) - (b[0] || 0)) || a[1] - b[1])
      .map((item) => item[2]);
  }

  /** An entry's event fields: the journal keeps them apart from its own at, level and event. */
  function eventFields(entry) {
    return entry.fields && typeof entry.fields === "object" ? entry.fields : {};
  }

  function renderJournal(result, entries) {
    const table = field("journal");
    if (entries === null) {
      table.hidden = true;
      table.dataset.count = "";
      setNote("journal", result.ok ? "Not available yet: unexpected answer." : failureText(result));
      return;
    }
    const tail = entries.slice(-JOURNAL_TAIL).reverse();
    table.dataset.count = String(tail.length);
    table.dataset.view = journalRoutine() ? "all" : "notable";
    if (!tail.length) {
      table.hidden = true;
      setNote("journal", journalRoutine() ? "The journal is empty."
        : "Nothing but routine events yet: tick \u201cShow routine events too\u201d to see every cycle.");
      return;
    }
    table.tBodies[0].replaceChildren(...tail.map((entry) => {
      const level = String(entry.level || "info").toLowerCase();
      const details = Object.entries(eventFields(entry))
        .map(([key, value]) => `${key}=${value !== null && typeof value === "object" ? JSON.stringify(value) : value}`)
        .join("  ");
      return element("tr", { "data-event": entry.event || "" },
        element("td", { className: "time" }, entry.at ? timeElement(entry.at) : "–"),
        element("td", {}, element("span", { className: `level level-${level}` }, level)),
        element("td", {}, element("code", {}, entry.event || "?")),
        element("td", {}, details));
    }));
    table.hidden = false;
    setNote("journal", "");
  }

  function renderTimeline(status, entries) {
    const list = field("timeline");
    const items = [];
    const started = status && status.started_at ? Date.parse(status.started_at) : NaN;
    if (status && status.started_at) {
      items.push({ at: status.started_at, kind: "started", what: "Started",
                   detail: [status.mode && `${status.mode} mode`, status.executor_id].filter(Boolean).join(", ") });
    }
    for (const entry of entries || []) {
      const known = TIMELINE_EVENTS[entry.event];
      if (!known || !entry.at) continue;
      if (!Number.isNaN(started) && Date.parse(entry.at) < started) continue; // an earlier process
      const fields = eventFields(entry);
      const detail = entry.event === "crashed"
        ? [fields.exception || fields.class_name || fields.class, fields.message].filter(Boolean).join(": ")
        : fields.reason || fields.who || fields.source || fields.signal || fields.message || "";
      items.push({ at: entry.at, kind: known[1], what: known[0], detail: String(detail) });
    }
    // The crash /status reports, unless the journal already showed it.
    if (status && status.crashed_at && !items.some((item) => item.kind === "crash")) {
      const exception = status.exception || {};
      items.push({ at: status.crashed_at, kind: "crash", what: "Crashed",
                   detail: [exception.class_name || exception.class, exception.message].filter(Boolean).join(": ") });
    }
    items.sort((a, b) => (Date.parse(a.at) || 0) - (Date.parse(b.at) || 0));
    list.replaceChildren(...items.map((item) => element("li", { "data-event": item.kind },
      timeElement(item.at),
      element("span", { className: "what" }, item.what),
      item.detail ? element("span", { className: "detail" }, ` ${item.detail}`) : null)));
    if (!items.length) list.append(element("li", { "data-event": "none" }, "Nothing yet."));
  }

  // -- operator actions ------------------------------------------------------------------------

  /** What closing does in this mode: whether money moves is what an operator must know before confirming. */
  function closeEffect(mode) {
    if (mode === "live") return "In live mode closing sells on the exchange: a market order at the current price.";
    if (mode === "paper") return "In paper mode this is a simulated close at the exchange's latest price; no order reaches the exchange.";
    if (mode === "replay") return "In replay mode this is a simulated close at the current bar's price; no order reaches an exchange.";
    return "In a backtest this is a simulated close at the current bar's price.";
  }

  /** Each action's confirmation: its title and what will happen. */
  const CONFIRMATIONS = {
    pause: () => ["Pause entries", "The strategy will open no new positions until you resume; open positions stay " +
      "managed (stop-loss, take-profit and the strategy's exits go on)."],
    resume: () => ["Resume entries", "The strategy may open new positions again from its next cycle."],
    "close-all": (mode, count) => ["Close all positions", `All ${count} open position(s) will be closed now. ` +
      `${closeEffect(mode)} The strategy may open new ones at its next cycle unless entries are paused.`],
    close: (mode, id, symbol) => [`Close position ${id}`, `Position ${id}${symbol ? ` (${symbol})` : ""} will be ` +
      `closed now. ${closeEffect(mode)}`],
    "reload-params": () => ["Reload parameters", "The strategy runs with these values from its next cycle. They are " +
      "checked as at start-up; values it refuses change nothing, and the reason is shown."],
  };

  let actionsEnabled = false;
  let openPositions = 0;
  let settleConfirm = null; // resolves the confirmation being asked

  /** Ask for confirmation in the dialog; resolves to true (with the edited parameters, if any) or false. */
  function confirmAction(title, text, parameters = null) {
    const dialog = document.getElementById("confirm");
    setText("confirm-title", title);
    setText("confirm-text", text);
    const label = dialog.querySelector("label.params");
    const area = document.getElementById("confirm-params");
    label.hidden = parameters === null;
    area.value = parameters === null ? "" : JSON.stringify(parameters, null, 2);
    document.getElementById("confirm-ok").textContent = title;
    if (settleConfirm) settleConfirm(false); // an earlier confirmation still waiting is a cancelled one
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => { settleConfirm = resolve; });
  }

  /** The dialog closed: settle the confirmation waiting for it. A late "close" event of an earlier
   * dialog (the event is queued) arrives while the next one is open, and is ignored. */
  function confirmClosed() {
    const dialog = document.getElementById("confirm");
    if (dialog.open || !settleConfirm) return;
    const settle = settleConfirm;
    settleConfirm = null;
    settle(dialog.returnValue === "confirm");
  }

  function showActionResult(outcome, text) {
    const node = field("action-result");
    node.dataset.outcome = outcome;
    node.textContent = text;
  }

  /** Confirm, send, show the executor's answer, refresh. */
  async function act(name, ...args) {
    const mode = lastStatus && lastStatus.mode;
    const [title, text] = CONFIRMATIONS[name](mode, ...args);
    showActionResult("", ""); // the previous action's answer does not stand for this one
    let body = null;
    if (name === "reload-params") {
      if (!(await confirmAction(title, text, (lastStatus && lastStatus.strategy_parameters) || {}))) return;
      try {
        body = { parameters: JSON.parse(document.getElementById("confirm-params").value) };
      } catch (error) {
        showActionResult("refused", `Not sent: the parameters are not JSON (${error.message}).`);
        return;
      }
    } else {
      if (!(await confirmAction(title, text))) return;
      if (name === "close") body = { position_id: Number(args[0]) };
    }
    showActionResult("pending", `${title}: sent…`);
    const result = await postJson(`control/${name}`, body);
    if (result.ok) showActionResult("done", result.data.message || `${title}: queued.`);
    else showActionResult("refused", `${title} refused (HTTP ${result.status}): ${result.error}`);
    refresh();
  }

  /** Show the buttons that apply now: only with control enabled and the executor running. */
  function renderActions(controlResult, status) {
    const panel = document.getElementById("actions");
    const running = !!status && ["starting", "running"].includes(status.status) && status.executor_running !== false;
    actionsEnabled = controlResult.ok && controlResult.data.enabled === true && running;
    panel.hidden = !controlResult.ok;
    let reason = "";
    if (controlResult.ok && !controlResult.data.enabled) reason = `Operator actions are off: ${controlResult.data.reason}`;
    else if (controlResult.ok && !running) reason = "The executor is not running: there is nothing to act on.";
    setNote("actions", reason);
    const show = { pause: actionsEnabled && !status.paused, resume: actionsEnabled && !!status.paused,
                   "close-all": actionsEnabled, "reload-params": actionsEnabled };
    for (const button of panel.querySelectorAll("button[data-action]")) {
      button.hidden = !show[button.dataset.action];
    }
    const closeAll = panel.querySelector('[data-action="close-all"]');
    closeAll.disabled = openPositions === 0;
    closeAll.title = openPositions === 0 ? "No open positions" : "";
  }

  // -- the refresh loop ------------------------------------------------------------------------

  let refreshes = 0;
  let renderErrors = 0;
  let timer = null;
  let busy = false;

  /** Run one section's drawing; a bug in one never stops the others. */
  function safely(name, draw) {
    try {
      return draw();
    } catch (error) {
      renderErrors += 1;
      document.body.dataset.renderErrors = String(renderErrors);
      console.error(`dashboard: could not draw ${name}`, error);
      return null;
    }
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    clearTimeout(timer);
    try {
      const [statusResult, summaryResult, positionsResult, logsResult, controlResult] = await Promise.all([
        getJson("status"),
        getJson("summary"),
        getJson("positions?status=open"),
        getJson(`logs?limit=${JOURNAL_FETCH}${journalRoutine() ? "" : "&level=info"}`),
        getJson("control"),
      ]);
      const status = safely("status", () => renderStatus(statusResult)) || lastStatus;
      const summary = safely("summary", () => renderSummary(summaryResult, status));
      safely("portfolio", () => renderPortfolio(status, summary));
      const open = positionsResult.ok ? listOf(positionsResult.data, "positions") : null;
      openPositions = open ? open.length : 0;
      safely("actions", () => renderActions(controlResult, status));
      safely("positions", () => renderPositions(positionsResult, actionsEnabled));
      const entries = safely("journal", () => journalEntries(logsResult));
      safely("journal", () => renderJournal(logsResult, entries));
      safely("timeline", () => renderTimeline(status, entries));
      const note = document.getElementById("refresh-note");
      note.textContent = statusResult.ok
        ? `Updated ${new Date().toLocaleTimeString()}`
        : `Last attempt ${new Date().toLocaleTimeString()} failed`;
    } finally {
      busy = false;
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      if (refreshes === 1 && window.performance && performance.mark) performance.mark("dashboard-ready");
      timer = setTimeout(refresh, refreshSeconds * 1000);
    }
  }

  function start() {
    setText("refresh-seconds", refreshSeconds);
    const image = field("chart");
    image.addEventListener("load", chartLoaded);
    image.addEventListener("error", chartFailed);
    document.getElementById("refresh-now").addEventListener("click", refresh);
    for (const button of document.querySelectorAll("#actions button[data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action, openPositions));
    }
    document.getElementById("confirm").addEventListener("close", confirmClosed);
    field("positions").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-close]");
      if (button) act("close", button.dataset.close, button.dataset.symbol);
    });
    const routine = document.getElementById("journal-routine");
    routine.checked = new URLSearchParams(window.location.search).get("journal") === "all";
    routine.addEventListener("change", refresh);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && lastStatusAt && Date.now() - lastStatusAt > refreshSeconds * 1000) {
        refresh();
      }
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
