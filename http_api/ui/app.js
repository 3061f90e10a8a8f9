// The operator page (docs/ui.md): plain JavaScript, no build step, no other origin.
//
// Security choices: the API key lives in this tab's sessionStorage only and travels as the
// x-api-key header of fetch() calls to this page's own origin, never in a URL; every value from
// the server is put into the page as text (textContent, never HTML); the live tail uses fetch()
// with a streaming reader because EventSource cannot send a header.
"use strict";

(() => {
  const KEY_STORE = "memtrace.apiKey";
  // The API beside the page (/ui → /api/v1/), so a proxy that serves memtrace under a path
  // prefix serves the page and its API together.
  const API = new URL("api/v1/", new URL(".", location.href));
  const PAGE_SIZE = 50;
  const TAIL_MAX = 200;
  const SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, not a request
  // Window → bucket: at most ~170 bars, each wide enough to see and to click.
  const BUCKETS = { "1h": "1m", "6h": "5m", "24h": "15m", "7d": "1h", "30d": "6h" };
  const BUCKET_SECONDS = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 };
  const MAX_GROUPS = 7; // more groups than colours are summed as "other" (colour 7)
  // The usual values keep their colour whatever else a window holds (errors are always red).
  const PREFERRED = {
    error: 5, action: 0, observation: 1, decision: 2, general: 6, outcome: 4,
    episodic: 0, entity: 3, session: 6,
  };

  const $ = (id) => document.getElementById(id);

  /** An element with attributes; string children become text nodes (never parsed as HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function status(id, text, warn = false) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("warn", warn);
  }

  /** "2026-12-02T14:03:12.123456Z" → "2026-12-02 14:03:12" (UTC, as the API answers). */
  function fmtTime(iso) {
    return typeof iso === "string" ? iso.slice(0, 19).replace("T", " ") : "";
  }

  function snippet(text, max = 240) {
    const line = String(text).replace(/\s+/g, " ").trim();
    return line.length > max ? line.slice(0, max - 1) + "…" : line;
  }

  // --- calling the API ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(statusCode, message) {
      super(message);
      this.status = statusCode;
    }
  }

  const state = {
    key: null,
    signedIn: false,
    agents: [],
    agent: "", // the selected agent id
    session: "", // the selected session id
    customWindow: null, // {since, until} after choosing a timeline bucket
    query: null, // the memory list's query, kept for its next pages
    nextCursor: null,
    selected: null, // id of the memory shown in detail
    orgId: null,
    loads: {}, // panel → generation, so a late answer never overwrites a newer one
  };

  function generation(panel) {
    state.loads[panel] = (state.loads[panel] || 0) + 1;
    const mine = state.loads[panel];
    return () => state.signedIn && state.loads[panel] === mine;
  }

  async function api(path, { method = "GET", params, body } = {}) {
    const url = new URL(path, API);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { accept: "application/json", "x-api-key": state.key };
    const init = { method, headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch {
      throw new ApiError(0, "the server did not answer");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.status === 401 && state.signedIn) {
      signOut("The server no longer accepts this key. Sign in again.");
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  function describe(error) {
    if (error instanceof ApiError) {
      if (error.status === 403) return "This key lacks the permission for this.";
      if (error.status === 0) return "The server did not answer.";
      return error.message;
    }
    return String(error);
  }

  function noteOrg(items) {
    if (state.orgId || !items) return;
    const withOrg = items.find((item) => item && item.org_id);
    if (withOrg) {
      state.orgId = withOrg.org_id;
      $("who-text").textContent = `Signed in · org ${state.orgId}`;
    }
  }

  // --- sign in and out ---------------------------------------------------------------------

  async function signIn(candidate) {
    state.key = candidate;
    $("sign-in-button").disabled = true;
    status("sign-in-error", "");
    let agents;
    try {
      agents = await api("agents", { params: { limit: 1000 } });
    } catch (error) {
      state.key = null;
      sessionStorage.removeItem(KEY_STORE);
      const message =
        error.status === 401
          ? "This key was not accepted (unknown, revoked or mistyped)."
          : error.status === 403
            ? "This key lacks the read permission the page needs."
            : `Could not sign in: ${describe(error)}`;
      status("sign-in-error", message);
      $("sign-in-button").disabled = false;
      $("api-key").focus();
      return;
    }
    sessionStorage.setItem(KEY_STORE, candidate);
    state.signedIn = true;
    $("api-key").value = "";
    $("sign-in-button").disabled = false;
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("who").hidden = false;
    $("who-text").textContent = "Signed in";
    renderAgents(agents.agents || []);
    noteOrg(agents.agents);
    loadSessions();
    applyFilters();
    startTail();
    $("memories-heading").focus();
  }

  /** Forget the key and everything shown; the page is back to its sign-in form. */
  function signOut(message = "") {
    state.signedIn = false;
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    stopTail();
    tail.lastId = null;
    tail.paused = false;
    tail.received = 0;
    Object.assign(state, {
      agents: [], agent: "", session: "", customWindow: null, query: null, nextCursor: null,
      selected: null, orgId: null,
    });
    for (const id of ["agents", "sessions", "agent-stats", "memory-list", "tail", "timeline-chart",
      "timeline-table"]) {
      $(id).replaceChildren();
    }
    $("detail").replaceChildren(el("p", { class: "help" }, "Choose a memory to see all of it."));
    $("context").replaceChildren(el("p", { class: "help" }, "Choose a session to see its context."));
    for (const id of ["list-status", "timeline-status", "tail-status", "sessions-note"]) status(id, "");
    $("filters").reset();
    $("f-agent").replaceChildren(el("option", { value: "" }, "all agents"));
    $("load-more").hidden = true;
    $("tail-toggle").hidden = false;
    setTailToggle();
    $("app").hidden = true;
    $("who").hidden = true;
    $("who-text").textContent = "";
    $("sign-in").hidden = false;
    status("sign-in-error", message);
    $("api-key").focus();
  }

  // --- agents and sessions -----------------------------------------------------------------

  function renderAgents(agents) {
    state.agents = agents;
    const list = $("agents");
    list.replaceChildren();
    const select = $("f-agent");
    select.replaceChildren(el("option", { value: "" }, "all agents"));
    if (!agents.length) list.append(el("li", { class: "help" }, "No agents yet."));
    for (const agent of agents) {
      const label = agent.name && agent.name !== agent.id ? `${agent.name} (${agent.id})` : agent.id;
      const button = el(
        "button",
        { type: "button", "data-agent": agent.id, "aria-pressed": "false" },
        label,
        el("span", { class: "meta" }, agent.last_active_at
          ? `active ${fmtTime(agent.last_active_at)}` : `created ${fmtTime(agent.created_at)}`),
      );
      button.addEventListener("click", () => chooseAgent(state.agent === agent.id ? "" : agent.id));
      list.append(el("li", {}, button));
      select.append(el("option", { value: agent.id }, label));
    }
    syncSelection();
  }

  function chooseAgent(agentId) {
    $("f-agent").value = agentId;
    if (agentId) $("f-session").value = "";
    applyFilters();
  }

  function chooseSession(sessionId) {
    $("f-session").value = sessionId;
    applyFilters();
    if (sessionId) showContext(sessionId);
  }

  /** Sidebar buttons pressed for the agent and session the filters name. */
  function syncSelection() {
    for (const button of $("agents").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.agent === state.agent));
    }
    for (const button of $("sessions").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.session === state.session));
    }
  }

  async function loadSessions() {
    const current = generation("sessions");
    const agentId = state.agent;
    status("sessions-note", "Loading…");
    try {
      const page = await api("sessions", { params: { agent_id: agentId, limit: 100 } });
      if (!current()) return;
      const list = $("sessions");
      list.replaceChildren();
      const sessions = page.sessions || [];
      noteOrg(sessions);
      status("sessions-note", sessions.length
        ? `${agentId ? `Of ${agentId}, newest` : "Newest"} first${page.has_more ? " (first 100)" : ""}.`
        : "No sessions.");
      for (const session of sessions) {
        const button = el(
          "button",
          { type: "button", "data-session": session.id, "aria-pressed": "false" },
          el("span", { class: "mono" }, session.id),
          el("span", { class: "meta" },
            `${session.agent_id} · ${session.status} · ${fmtTime(session.created_at)}`),
        );
        button.addEventListener("click", () =>
          chooseSession(state.session === session.id ? "" : session.id));
        list.append(el("li", {}, button));
      }
      syncSelection();
    } catch (error) {
      if (current()) status("sessions-note", describe(error), true);
    }
  }

  async function loadAgentStats() {
    const current = generation("stats");
    const box = $("agent-stats");
    box.replaceChildren();
    if (!state.agent) return;
    try {
      const stats = await api(`agents/${encodeURIComponent(state.agent)}/stats`);
      if (!current()) return;
      const rows = [
        ["memories", stats.memory_count], ["last 24 h", stats.memories_24h],
        ["errors 24 h", stats.errors_24h], ["sessions", stats.session_count],
        ["active sessions", stats.active_sessions],
      ];
      box.replaceChildren(el("dl", { "aria-label": `Statistics of ${state.agent}` },
        rows.map(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))])));
    } catch (error) {
      if (current()) box.replaceChildren(el("p", { class: "error" }, describe(error)));
    }
  }

  // --- filters -----------------------------------------------------------------------------

  function readFilters() {
    const windowChoice = $("f-window").value;
    const custom = windowChoice === "custom" && state.customWindow;
    return {
      text: $("f-search").value.trim(),
      agent_id: $("f-agent").value,
      session_id: $("f-session").value.trim(),
      memory_type: $("f-type").value,
      event_type: $("f-event").value.trim(),
      tags: $("f-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
      since: custom ? state.customWindow.since : windowChoice,
      until: custom ? state.customWindow.until : "",
      bucket: custom ? state.customWindow.bucket : BUCKETS[windowChoice] || "1h",
    };
  }

  function applyFilters() {
    if ($("f-window").value !== "custom") {
      state.customWindow = null;
      const custom = $("f-window").querySelector('option[value="custom"]');
      custom.hidden = true;
      custom.disabled = true;
    }
    const filters = readFilters();
    const agentChanged = filters.agent_id !== state.agent;
    state.agent = filters.agent_id;
    state.session = filters.session_id;
    if (agentChanged) {
      loadSessions();
      loadAgentStats();
    }
    syncSelection();
    loadMemories(filters, false);
    loadTimeline(filters);
  }

  /** The list's request: GET /memories, or POST /search when there is text to look for. */
  function memoryQuery(f) {
    if (f.text) {
      const body = { content_contains: f.text, since: f.since || undefined, until: f.until || undefined };
      if (f.agent_id) body.agent_id = f.agent_id;
      if (f.session_id) body.session_id = f.session_id;
      if (f.memory_type) body.memory_types = [f.memory_type];
      if (f.event_type) body.event_types = [f.event_type];
      if (f.tags.length) body.tags = f.tags;
      return { search: true, body };
    }
    const params = {
      agent_id: f.agent_id, session_id: f.session_id, memory_type: f.memory_type,
      event_type: f.event_type, tags: f.tags.join(","), since: f.since, until: f.until,
    };
    return { search: false, params };
  }

  // --- the memory list ---------------------------------------------------------------------

  async function loadMemories(filters, more) {
    const current = generation("list");
    if (!more) {
      state.query = memoryQuery(filters);
      state.nextCursor = null;
      $("memory-list").replaceChildren();
      $("load-more").hidden = true;
    }
    const query = state.query;
    const cursor = more ? state.nextCursor : undefined;
    status("list-status", "Loading…");
    $("load-more").disabled = true;
    try {
      let memories;
      let page;
      if (query.search) {
        page = await api("search", { method: "POST", body: { ...query.body, limit: PAGE_SIZE, cursor } });
        memories = page.results || [];
      } else {
        page = await api("memories", { params: { ...query.params, limit: PAGE_SIZE, cursor } });
        memories = page.memories || [];
      }
      if (!current()) return;
      noteOrg(memories);
      const list = $("memory-list");
      for (const memory of memories) list.append(el("li", {}, memoryButton(memory)));
      state.nextCursor = page.has_more ? page.next_cursor || null : null;
      $("load-more").hidden = !state.nextCursor;
      $("load-more").disabled = false;
      const shown = list.children.length;
      let text = shown === 0 ? "No memories match." : `${shown} ${shown === 1 ? "memory" : "memories"} shown, newest first`;
      if (shown) text += state.nextCursor ? "; more are available." : "; that is all.";
      if (page.partial) {
        text += " The server stopped at its work budget: narrow the filters (agent, session, time) for a complete answer.";
      }
      status("list-status", text, Boolean(page.partial));
    } catch (error) {
      if (!current()) return;
      $("load-more").disabled = false;
      status("list-status", describe(error), true);
    }
  }

  function memoryButton(memory) {
    const button = el(
      "button",
      { type: "button", class: "memory", "data-id": memory.id,
        "aria-current": memory.id === state.selected ? "true" : null },
      el("span", { class: "meta" },
        el("time", { datetime: memory.time }, fmtTime(memory.time)),
        el("span", { class: memory.event_type === "error" ? "badge error" : "badge" }, memory.event_type),
        el("span", {}, memory.memory_type),
        el("span", {}, memory.agent_id),
        memory.tags && memory.tags.length ? el("span", {}, memory.tags.map((t) => `#${t}`).join(" ")) : null),
      el("span", { class: "text" }, snippet(memory.content)),
    );
    button.addEventListener("click", () => showMemory(memory.id));
    return button;
  }

  // --- one memory --------------------------------------------------------------------------

  async function showMemory(memoryId) {
    const current = generation("detail");
    state.selected = memoryId;
    for (const button of document.querySelectorAll("button.memory")) {
      if (button.dataset.id === memoryId) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    const box = $("detail");
    box.replaceChildren(el("p", { class: "status" }, "Loading…"));
    try {
      const memory = await api(`memories/${encodeURIComponent(memoryId)}`);
      if (!current()) return;
      box.replaceChildren(renderMemory(memory));
    } catch (error) {
      if (current()) box.replaceChildren(el("p", { class: "error" }, describe(error)));
    }
  }

  function renderMemory(memory) {
    const link = (text, onClick) => {
      const button = el("button", { type: "button", class: "link" }, text);
      button.addEventListener("click", onClick);
      return button;
    };
    const rows = [
      ["id", el("span", { class: "mono" }, memory.id)],
      ["time (UTC)", el("time", { datetime: memory.time }, memory.time)],
      ["agent", memory.agent_id],
      ["session", memory.session_id ? link(memory.session_id, () => chooseSession(memory.session_id)) : null],
      ["memory type", memory.memory_type],
      ["event type", memory.event_type],
      ["importance", memory.importance !== undefined && memory.importance !== null ? String(memory.importance) : null],
      ["tags", memory.tags && memory.tags.length ? memory.tags.join(", ") : null],
      ["parent", memory.parent_id ? link(memory.parent_id, () => showMemory(memory.parent_id)) : null],
      ["dedup key", el("span", { class: "mono" }, memory.dedup_key)],
    ].filter(([, value]) => value !== null && value !== undefined);
    return el("div", { class: "detail", "data-memory": memory.id },
      el("dl", {}, rows.map(([name, value]) => [el("dt", {}, name), el("dd", {}, value)])),
      el("h3", {}, "Content"),
      el("pre", { class: "content" }, memory.content),
      memory.metadata ? [el("h3", {}, "Metadata"), el("pre", {}, JSON.stringify(memory.metadata, null, 2))] : null,
    );
  }

  // --- a session's context -----------------------------------------------------------------

  async function showContext(sessionId) {
    const current = generation("context");
    const box = $("context");
    box.replaceChildren(el("p", { class: "status" }, "Loading…"));
    try {
      const result = await api(`sessions/${encodeURIComponent(sessionId)}/context`, { method: "POST", body: {} });
      if (!current()) return;
      const facts = `${result.memory_count} memories · about ${result.token_estimate} tokens` +
        (result.truncated ? ` · truncated, ${result.omitted_count} left out` : "");
      box.replaceChildren(
        el("p", { class: "help" }, el("span", { class: "mono" }, sessionId), ` · ${facts}`),
        el("pre", { class: "context" }, result.context),
      );
    } catch (error) {
      if (current()) box.replaceChildren(el("p", { class: "error" }, describe(error)));
    }
  }

  // --- the timeline ------------------------------------------------------------------------

  async function loadTimeline(f) {
    const current = generation("timeline");
    const groupBy = $("group-by").value;
    const params = {
      since: f.since, until: f.until, bucket: f.bucket, group_by: groupBy,
      agent_id: f.agent_id, session_id: f.session_id, memory_type: f.memory_type,
      event_type: f.event_type, tags: f.tags.join(","), content_contains: f.text,
    };
    status("timeline-status", "Loading…");
    try {
      const data = await api("timeline", { params });
      if (!current()) return;
      drawTimeline(data);
    } catch (error) {
      if (!current()) return;
      $("timeline-chart").replaceChildren();
      $("timeline-table").replaceChildren();
      const missing = error instanceof ApiError && (error.status === 404 || error.status === 405);
      status("timeline-status", missing
        ? "No timeline: this server does not offer GET /api/v1/timeline yet."
        : `No timeline: ${describe(error)}`, true);
    }
  }

  function groupNames(buckets) {
    const totals = new Map();
    for (const bucket of buckets) {
      for (const [name, count] of Object.entries(bucket.groups || {})) {
        totals.set(name, (totals.get(name) || 0) + count);
      }
    }
    const names = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return names.map(([name]) => name);
  }

  /** Group → colour index for the groups shown: preferred colours first, then the free ones. */
  function colours(names) {
    const shown = names.slice(0, MAX_GROUPS);
    const byName = new Map();
    for (const name of shown) {
      const wanted = PREFERRED[name];
      if (wanted !== undefined && ![...byName.values()].includes(wanted)) byName.set(name, wanted);
    }
    let next = 0;
    for (const name of shown) {
      if (byName.has(name)) continue;
      while ([...byName.values()].includes(next)) next += 1;
      byName.set(name, next);
    }
    return byName;
  }

  /** A bucket's bar as stacked segments: [{name, count, colour}], heights summing to its count. */
  function segments(bucket, names, palette) {
    const shown = names.slice(0, MAX_GROUPS);
    const parts = shown.map((name) => ({
      name, count: bucket.groups?.[name] || 0, colour: palette.get(name),
    }));
    const inGroups = Object.values(bucket.groups || {}).reduce((a, b) => a + b, 0);
    const other = inGroups - parts.reduce((a, p) => a + p.count, 0);
    if (other > 0) parts.push({ name: "other", count: other, colour: MAX_GROUPS });
    // a memory without a group (no tag), or in several (several tags): scale to the count
    const sum = parts.reduce((a, p) => a + p.count, 0);
    if (sum === 0) return bucket.count ? [{ name: "memories", count: bucket.count, colour: 0, scale: 1 }] : [];
    return parts.filter((p) => p.count > 0).map((p) => ({ ...p, scale: bucket.count / sum }));
  }

  function drawTimeline(data) {
    const buckets = data.buckets || [];
    const names = data.group_by ? groupNames(buckets) : [];
    const palette = colours(names);
    const width = 800, height = 190, left = 40, right = 8, top = 10, bottom = 24;
    const plotW = width - left - right, plotH = height - top - bottom;
    const peak = buckets.reduce((best, b) => (b.count > best.count ? b : best), { count: 0 });
    const max = Math.max(1, peak.count);
    const spanS = buckets.length * (data.bucket_seconds || 3600);
    const label = (iso) => (spanS > 86400 ? fmtTime(iso).slice(5, 16) : fmtTime(iso).slice(11, 16));
    const summary = `Memories per ${data.bucket} from ${fmtTime(data.since)} to ${fmtTime(data.until)} UTC: ` +
      `${data.total} in all` + (peak.count ? `, at most ${peak.count} (at ${fmtTime(peak.start)})` : "") + ".";
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "timeline-svg-title" },
      svg("title", { id: "timeline-svg-title" }, summary));
    chart.append(
      svg("line", { class: "axis", x1: left, y1: top + plotH, x2: width - right, y2: top + plotH }),
      svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }),
      svg("text", { x: left - 4, y: top + 9, "text-anchor": "end" }, String(max)),
      svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"),
    );
    const step = plotW / Math.max(1, buckets.length);
    const labelEvery = Math.max(1, Math.ceil(buckets.length / 6));
    buckets.forEach((bucket, i) => {
      const x = left + i * step;
      if (i % labelEvery === 0) {
        chart.append(svg("text", { x: x + 1, y: height - 6 }, label(bucket.start)));
      }
      let y = top + plotH;
      const tip = `${fmtTime(bucket.start)} UTC: ${bucket.count}` +
        (names.length ? ` (${Object.entries(bucket.groups || {}).map(([n, c]) => `${n} ${c}`).join(", ")})` : "");
      for (const part of segments(bucket, names, palette)) {
        const h = (part.count * part.scale / max) * plotH;
        y -= h;
        const rect = svg("rect", {
          class: `bucket c${part.colour}`, x: x + 0.5, y, width: Math.max(1, step - 1), height: h,
        }, svg("title", {}, tip));
        rect.addEventListener("click", () => zoomTo(bucket, data));
        chart.append(rect);
      }
    });
    const legend = names.length
      ? el("ul", { class: "legend", "aria-label": `Colours by ${data.group_by}` },
        [...names.slice(0, MAX_GROUPS), ...(names.length > MAX_GROUPS ? ["other"] : [])].map((name) =>
          el("li", {}, el("span", { class: `swatch c${palette.get(name) ?? MAX_GROUPS}`,
            "aria-hidden": "true" }), name)))
      : null;
    $("timeline-chart").replaceChildren(chart, ...(legend ? [legend] : []));
    status("timeline-status", `${summary} Choose a bar, or a row of the table, to list that bucket's memories.`);
    drawTable(data, names);
  }

  /** The chart's numbers as a table, each non-empty bucket with a button to list its memories. */
  function drawTable(data, names) {
    const columns = names.slice(0, MAX_GROUPS);
    const rows = (data.buckets || []).filter((b) => b.count > 0);
    if (!rows.length) {
      $("timeline-table").replaceChildren(el("p", { class: "help" }, "No memories in this window."));
      return;
    }
    const table = el("table", {},
      el("caption", { class: "help" }, `Non-empty ${data.bucket} buckets (UTC)`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "start"), el("th", { scope: "col" }, "count"),
        columns.map((name) => el("th", { scope: "col" }, name)), el("th", { scope: "col" }, "memories"))),
      el("tbody", {}, rows.map((bucket) => {
        const show = el("button", { type: "button", class: "link" }, "list");
        show.setAttribute("aria-label", `List the memories of ${fmtTime(bucket.start)}`);
        show.addEventListener("click", () => zoomTo(bucket, data));
        return el("tr", {}, el("td", {}, fmtTime(bucket.start)), el("td", {}, String(bucket.count)),
          columns.map((name) => el("td", {}, String(bucket.groups?.[name] || 0))), el("td", {}, show));
      })),
    );
    $("timeline-table").replaceChildren(table);
  }

  /** List one bucket's memories; the timeline zooms into it with finer buckets. */
  function zoomTo(bucket, data) {
    const start = new Date(bucket.start.replace(/(\.\d{3})\d+/, "$1"));
    const end = new Date(start.getTime() + (data.bucket_seconds || 3600) * 1000);
    const seconds = (end - start) / 1000;
    const finer = Object.keys(BUCKET_SECONDS).find((b) => seconds / BUCKET_SECONDS[b] <= 120) || "1d";
    state.customWindow = { since: start.toISOString(), until: end.toISOString(), bucket: finer };
    const option = $("f-window").querySelector('option[value="custom"]');
    option.hidden = false;
    option.disabled = false;
    option.textContent = `${fmtTime(bucket.start)} + ${data.bucket}`;
    $("f-window").value = "custom";
    applyFilters();
    $("memories-heading").focus();
  }

  // --- the live tail -----------------------------------------------------------------------

  const tail = { controller: null, lastId: null, paused: false, attempt: 0, timer: null, received: 0 };

  function setTailToggle() {
    const toggle = $("tail-toggle");
    toggle.textContent = tail.paused ? "Resume" : "Pause";
  }

  function stopTail() {
    if (tail.timer) clearTimeout(tail.timer);
    tail.timer = null;
    if (tail.controller) tail.controller.abort();
    tail.controller = null;
  }

  function startTail() {
    stopTail();
    if (!state.signedIn || tail.paused) return;
    const controller = new AbortController();
    tail.controller = controller;
    followStream(controller).catch((error) => {
      if (!controller.signal.aborted) retryTail(String(error));
    });
  }

  /** GET /api/v1/stream read as Server-Sent Events; resumes after a drop with Last-Event-ID. */
  async function followStream(controller) {
    const headers = { accept: "text/event-stream", "x-api-key": state.key };
    if (tail.lastId) headers["last-event-id"] = tail.lastId;
    status("tail-status", tail.lastId ? "Reconnecting…" : "Connecting…");
    let response;
    try {
      response = await fetch(new URL("stream", API), {
        headers, signal: controller.signal, credentials: "omit", cache: "no-store",
      });
    } catch {
      if (!controller.signal.aborted) retryTail("the connection failed");
      return;
    }
    if (response.status === 404 || response.status === 405) {
      status("tail-status", "No live tail: this server does not offer GET /api/v1/stream yet.", true);
      $("tail-toggle").hidden = true;
      return;
    }
    if (response.status === 401) {
      signOut("The server no longer accepts this key. Sign in again.");
      return;
    }
    if (response.status === 403) {
      status("tail-status", "No live tail: this key lacks the read permission.", true);
      return;
    }
    if (!response.ok || !response.body) {
      let reason = `HTTP ${response.status}`;
      try {
        reason = (await response.json()).error || reason;
      } catch {
        // not JSON: keep the status
      }
      retryTail(reason, Number(response.headers.get("retry-after")) || 0);
      return;
    }
    tail.attempt = 0;
    const opened = Date.now();
    liveStatus();
    $("tail").setAttribute("data-live", "true");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // One line ending for the parser; a trailing \r waits for the next chunk (\r\n split).
        buffer = (buffer + value).replace(/\r\n|\r(?!$)/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // the connection dropped (or we aborted it)
    }
    $("tail").removeAttribute("data-live");
    if (controller.signal.aborted) return;
    // The server ends an idle stream after a while (limits.stream_idle_s): open the next one
    // at once, from the last id. A stream that ends early waits, with backoff.
    if (Date.now() - opened > 5000) startTail();
    else retryTail("the stream ended");
  }

  /** One SSE event block: id, event and data lines; comments (": ping") are heartbeats. */
  function dispatch(block) {
    let id = null;
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (id !== null) tail.lastId = id;
    if ((event !== "memory" && event !== "message") || !data.length) return;
    let memory;
    try {
      memory = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    if (!memory || typeof memory.id !== "string") return;
    tail.received += 1;
    const list = $("tail");
    list.prepend(el("li", {}, memoryButton(memory)));
    while (list.children.length > TAIL_MAX) list.lastElementChild.remove();
    liveStatus();
  }

  function liveStatus() {
    status("tail-status", tail.received
      ? `Live: ${tail.received} new ${tail.received === 1 ? "memory" : "memories"} since signing in.`
      : "Live: new memories of the org appear below as they are written.");
  }

  function retryTail(reason, retryAfterS = 0) {
    if (!state.signedIn || tail.paused) return;
    tail.attempt += 1;
    const delay = retryAfterS > 0 ? retryAfterS * 1000 : Math.min(15000, 500 * 2 ** Math.min(tail.attempt, 5));
    status("tail-status", `Reconnecting in ${Math.ceil(delay / 1000)} s (${reason}).`, true);
    tail.timer = setTimeout(() => {
      tail.timer = null;
      startTail();
    }, delay);
  }

  // --- wiring ------------------------------------------------------------------------------

  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const candidate = $("api-key").value.trim();
    if (!candidate) {
      status("sign-in-error", "Enter an API key.");
      $("api-key").focus();
      return;
    }
    signIn(candidate);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  $("reset-filters").addEventListener("click", () => {
    $("filters").reset();
    state.customWindow = null;
    $("context").replaceChildren(el("p", { class: "help" }, "Choose a session to see its context."));
    applyFilters();
  });
  $("load-more").addEventListener("click", () => {
    if (state.nextCursor) loadMemories(null, true);
  });
  $("group-by").addEventListener("change", () => loadTimeline(readFilters()));
  $("tail-toggle").addEventListener("click", () => {
    tail.paused = !tail.paused;
    setTailToggle();
    if (tail.paused) {
      stopTail();
      $("tail").removeAttribute("data-live");
      status("tail-status", tail.lastId
        ? "Paused: resuming delivers what was written meanwhile."
        : "Paused.");
    } else {
      startTail();
    }
  });

  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved);
  else $("api-key").focus();
})();
