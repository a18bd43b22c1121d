// The browser half of evkit's RunWidget (anywidget ESM): draws the DAG once per set of
// nodes (laying it out here unless the kernel sent graphviz's positions), recolours nodes
// when the `states` trait changes, keeps the event table's page in sync, and sends
// {type: "send", step, payload} when a "Send" button of a waiting manual event is pressed
// and {type: "page", offset} for another page of the table. Selecting a step (a click on
// its node or row, or Enter/Space on it; Escape closes) sends {type: "details", step} and
// shows the `details` trait the kernel answers with ({type: "details", step: null} when
// closed). It never writes traits: the kernel owns all state.
const SVGNS = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 30;
const GAP_X = 60;
const GAP_Y = 14;
const MARGIN = 10;
const LABEL_CHARS = 22;
const STATE_ORDER = ["pending", "running", "waiting", "received", "checkpointed", "committed", "done", "failed", "cancelled"];
const TIME_COLUMNS = ["waiting", "received", "checkpointed", "committed"];
const HEAD = ["step", "label", "listener", "args", "state", "attempts", ...TIME_COLUMNS, "time left", "send"];

function svg(tag, attrs) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function html(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The same layered layout as evkit/notebook/layout.py's _layered (tests compare the two):
// a node sits one column right of its furthest upstream node, and each column is sorted
// once by the mean row of its nodes' upstreams. `ids` are in topological order.
export function layered(ids, edges) {
  const upstream = new Map(ids.map((id) => [id, []]));
  for (const [a, b] of edges) if (upstream.has(a) && upstream.has(b)) upstream.get(b).push(a);
  const layer = new Map();
  const columns = new Map();
  for (const id of ids) {
    let index = 0;
    for (const u of upstream.get(id)) index = Math.max(index, (layer.has(u) ? layer.get(u) : -1) + 1);
    layer.set(id, index);
    if (!columns.has(index)) columns.set(index, []);
    columns.get(index).push(id);
  }
  const row = new Map();
  const order = [...columns.keys()].sort((a, b) => a - b);
  for (const index of order) {
    const column = columns.get(index);
    column.forEach((id, position) => {
      let total = 0, count = 0;
      for (const u of upstream.get(id)) if (row.has(u)) { total += row.get(u); count += 1; }
      row.set(id, count ? total / count : position);
    });
    column.sort((a, b) => row.get(a) - row.get(b));
    column.forEach((id, position) => row.set(id, position));
  }
  let tallest = 0;
  for (const column of columns.values()) tallest = Math.max(tallest, column.length);
  const pitchY = NODE_H + GAP_Y;
  const positions = new Map();
  for (const [index, column] of columns) {
    const top = MARGIN + ((tallest - column.length) * pitchY) / 2 + NODE_H / 2;
    const x = MARGIN + NODE_W / 2 + index * (NODE_W + GAP_X);
    column.forEach((id, position) => positions.set(id, [x, top + position * pitchY]));
  }
  const width = columns.size ? columns.size * (NODE_W + GAP_X) - GAP_X + 2 * MARGIN : 2 * MARGIN;
  const height = Math.max(tallest * pitchY - GAP_Y + 2 * MARGIN, 2 * MARGIN);
  return { positions, width, height };
}

function label(id) {
  return id.length <= LABEL_CHARS ? id : "…" + id.slice(id.length - (LABEL_CHARS - 1));
}

// A time (epoch seconds) in the browser's own locale and time zone: "Dec 7, 07:03:48 PM".
export function localTime(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// A node's text: its label (text the user wrote, or {at: seconds} for a timer's deadline),
// shortened at the end, else its id, shortened at the start (ids differ in their suffix).
export function nodeText(id, value) {
  if (value === undefined || value === null) return label(id);
  const text = typeof value === "string" ? value : localTime(value.at);
  return text.length <= LABEL_CHARS ? text : text.slice(0, LABEL_CHARS - 1) + "…";
}

// A time (epoch seconds) to the millisecond, in the browser's zone: "19:03:48.125".
export function localClock(seconds) {
  const d = new Date(seconds * 1000);
  const text = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return `${text}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function edgePath(a, b) {
  const x1 = a.x + NODE_W / 2, y1 = a.y, x2 = b.x - NODE_W / 2, y2 = b.y, mid = (x1 + x2) / 2;
  return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
}

function render({ model, el }) {
  const root = html("div", "evkit-run");
  const header = html("div", "evkit-header");
  const counts = html("div", "evkit-counts");
  const dagBox = html("div", "evkit-dag-box");
  const table = html("table", "evkit-events");
  const tbody = html("tbody");
  const headRow = html("tr");
  for (const name of HEAD) headRow.appendChild(html("th", "", name));
  const thead = html("thead");
  thead.appendChild(headRow);
  table.append(thead, tbody);
  const tableBox = html("div", "evkit-events-box");
  tableBox.appendChild(table);
  const pager = html("div", "evkit-pager");
  const prev = html("button", "evkit-page-prev", "‹ previous");
  const pageText = html("span", "evkit-page-text");
  const next = html("button", "evkit-page-next", "next ›");
  for (const b of [prev, next]) b.type = "button";
  pager.append(prev, pageText, next);
  prev.addEventListener("click", () => turnPage(-1));
  next.addEventListener("click", () => turnPage(1));
  const panel = html("div", "evkit-details");
  panel.hidden = true;
  panel.setAttribute("role", "region");
  panel.setAttribute("aria-label", "step details");
  const questionsBox = html("div", "evkit-questions");  // workflow.ask forms: question_forms.js
  root.append(header, counts, questionsBox, dagBox, panel, tableBox, pager);
  el.appendChild(root);

  let nodeEls = new Map();
  const rowEls = new Map();
  let offsetMs = 0;
  let selected = null;     // the step whose details are open
  let returnFocus = null;  // the node or row that opened them, focused again on close

  function select(step, origin) {
    if (selected !== null && selected !== step) markSelected(selected, false);
    selected = step;
    returnFocus = origin || null;
    markSelected(step, true);
    model.send({ type: "details", step: step });
    drawDetails();
  }

  function closeDetails() {
    if (selected === null) return;
    markSelected(selected, false);
    selected = null;
    panel.hidden = true;
    model.send({ type: "details", step: null });
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
    returnFocus = null;
  }

  function markSelected(step, on) {
    const node = nodeEls.get(step);
    if (node) { if (on) node.g.setAttribute("data-selected", "true"); else node.g.removeAttribute("data-selected"); }
    const row = rowEls.get(step);
    if (row) { if (on) row.tr.dataset.selected = "true"; else delete row.tr.dataset.selected; }
  }

  // Enter or Space on a focused node or row opens its details, as a click does.
  function onActivateKey(e, step, origin) {
    if (e.target !== origin || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    select(step, origin);
  }

  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && selected !== null) { e.preventDefault(); closeDetails(); }
  });

  function detailRow(list, name, value, pre) {
    if (value === null || value === undefined || value === "") return;
    const dt = html("dt", "", name);
    const dd = html("dd", `evkit-details-${name.replace(/ /g, "-")}`);
    if (pre) dd.appendChild(html("pre", "", value)); else dd.textContent = value;
    list.append(dt, dd);
  }

  function drawDetails() {
    if (selected === null) { panel.hidden = true; return; }
    const d = model.get("details") || {};
    const ready = d.step === selected;
    panel.hidden = false;
    panel.dataset.step = selected;
    const head = html("div", "evkit-details-head");
    const title = html("span", "evkit-details-title");
    const close = html("button", "evkit-details-close", "×");
    close.type = "button";
    close.title = "Close (Escape)";
    close.setAttribute("aria-label", "Close details");
    close.addEventListener("click", closeDetails);
    head.append(title, close);
    const list = html("dl", "evkit-details-list");
    if (!ready) {
      title.textContent = `${selected}: loading…`;
      panel.replaceChildren(head, list);
      return;
    }
    const name = d.label_at !== null && d.label_at !== undefined ? localTime(d.label_at) : d.label;
    title.textContent = `${name ? name + " — " : ""}${d.step} (${d.kind} step, ${d.state})${d.loading ? " loading…" : ""}`;
    panel.dataset.state = d.state;
    detailRow(list, "listener", d.listener);
    detailRow(list, "arguments", d.args, true);
    const cut = d.cut ? " (a preview: cut at 2,000 characters; query the store for all of it)" : "";
    if (d.kind === "event") detailRow(list, "payload", d.payload === null ? null : d.payload + cut, true);
    else detailRow(list, "result", d.result === null ? null : d.result + cut, true);
    detailRow(list, "event id", d.event_id);
    detailRow(list, "error", d.error);
    detailRow(list, "traceback", d.traceback, true);
    const rows = d.attempt_rows || [];
    if (rows.length) {
      const ol = html("ol", "evkit-details-attempts");
      for (const a of rows) {
        const span = a.ended_at === null ? "" : ` (${(a.ended_at - a.started_at).toFixed(3)} s)`;
        ol.appendChild(html("li", "", `${a.state} at ${localClock(a.started_at)}${span}${a.error ? ": " + a.error : ""}`));
      }
      list.append(html("dt", "", `attempts (${rows.length})`), html("dd", "evkit-details-attempts-box"));
      list.lastChild.appendChild(ol);
    } else {
      detailRow(list, "attempts", String(d.attempts));
    }
    const times = d.times || [];
    if (times.length) {
      const tl = html("ol", "evkit-details-times");
      let before = null;
      for (const [state, at] of times) {
        const step = before === null ? "" : ` (+${(at - before).toFixed(3)} s)`;
        const li = html("li", `evkit-state-${state}`, `${state} ${localClock(at)}${step}`);
        li.dataset.state = state;
        li.title = new Date(at * 1000).toLocaleString();
        tl.appendChild(li);
        before = at;
      }
      list.append(html("dt", "", "times"), html("dd", "evkit-details-times-box"));
      list.lastChild.appendChild(tl);
    }
    panel.replaceChildren(head, list);
  }

  function drawHeader() {
    const status = model.get("status");
    const error = model.get("error");
    header.textContent = `evkit run ${model.get("workflow_id")}: ${status}${error ? " — " + error : ""}`;
    root.dataset.status = status;
    root.dataset.version = String(model.get("version"));
  }

  function drawDag() {
    const nodes = model.get("nodes");
    const edges = model.get("edges");
    let width = model.get("width");
    let height = model.get("height");
    const byKernel = width > 0 && nodes.every((n) => n.x !== undefined);  // graphviz's positions
    let pos;
    if (byKernel) {
      pos = new Map(nodes.map((n) => [n.id, n]));
    } else {
      const drawn = layered(nodes.map((n) => n.id), edges);
      pos = new Map([...drawn.positions].map(([id, [x, y]]) => [id, { x, y }]));
      ({ width, height } = drawn);
    }
    root.dataset.layout = byKernel ? "kernel" : "browser";
    const canvas = svg("svg", { class: "evkit-dag", viewBox: `0 0 ${width} ${height}`, width: width });
    for (const [a, b] of edges) {
      if (pos.has(a) && pos.has(b)) canvas.appendChild(svg("path", { class: "evkit-edge", d: edgePath(pos.get(a), pos.get(b)) }));
    }
    nodeEls = new Map();
    for (const n of nodes) {
      const p = pos.get(n.id);
      const g = svg("g", { class: "evkit-node", "data-step": n.id, tabindex: 0, role: "button" });
      g.addEventListener("click", () => select(n.id, g));
      g.addEventListener("keydown", (e) => onActivateKey(e, n.id, g));
      const title = svg("title");
      const rect = svg("rect", { x: p.x - NODE_W / 2, y: p.y - NODE_H / 2, width: NODE_W, height: NODE_H, rx: n.kind === "event" ? 12 : 3 });
      const text = svg("text", { x: p.x, y: p.y + 4, "text-anchor": "middle" });
      g.append(title, rect, text);
      canvas.appendChild(g);
      nodeEls.set(n.id, { g, title, text, kind: n.kind });
    }
    dagBox.replaceChildren(canvas);
    if (selected !== null) markSelected(selected, true);
    paintLabels();
    paintStates();
  }

  function paintLabels() {
    const labels = model.get("labels") || {};
    for (const [id, ent] of nodeEls) {
      ent.text.textContent = nodeText(id, labels[id]);
      ent.g.setAttribute("aria-label", `${ent.text.textContent}: show details`);
    }
  }

  function paintStates() {
    const states = model.get("states");
    const tally = new Map();
    for (const [id, ent] of nodeEls) {
      const state = states[id] || "pending";
      tally.set(state, (tally.get(state) || 0) + 1);
      ent.g.setAttribute("class", `evkit-node evkit-kind-${ent.kind} evkit-state-${state}`);
      ent.g.setAttribute("data-state", state);
      ent.title.textContent = `${id}: ${state}`;
    }
    const parts = STATE_ORDER.filter((s) => tally.has(s)).map((s) => {
      const part = html("span", `evkit-count evkit-state-${s}`, `${tally.get(s).toLocaleString("en")} ${s}`);
      part.dataset.state = s;
      return part;
    });
    counts.replaceChildren(html("span", "", `${nodeEls.size.toLocaleString("en")} steps:`), ...parts);
  }

  function drawPager() {
    const total = model.get("event_total");
    const size = model.get("event_page_rows");
    const offset = model.get("event_offset");
    const shown = model.get("events").length;
    pager.style.display = total > size ? "" : "none";
    pageText.textContent = `event steps ${shown ? offset + 1 : 0}-${offset + shown} of ${total.toLocaleString("en")}`;
    prev.disabled = offset <= 0;
    next.disabled = offset + size >= total;
  }

  function turnPage(direction) {
    const size = model.get("event_page_rows");
    model.send({ type: "page", offset: model.get("event_offset") + direction * size });
  }

  function timeLeft(row) {
    if (row.deadline === null || row.deadline === undefined) return "";
    const left = Math.max(0, row.deadline * 1000 - (Date.now() + offsetMs)) / 1000;
    return `${row.deadline_kind} in ${left.toFixed(1)} s`;
  }

  function makeRow(step) {
    const tr = html("tr", "evkit-event-row");
    tr.dataset.step = step;
    tr.tabIndex = 0;
    tr.title = "details: click, or Enter";
    // The send form's input and button keep their own clicks.
    tr.addEventListener("click", (e) => { if (!e.target.closest("input, button")) select(step, tr); });
    tr.addEventListener("keydown", (e) => onActivateKey(e, step, tr));
    const cells = {};
    for (const name of HEAD) {
      const td = html("td", `evkit-col-${name.replace(" ", "-")}`);
      cells[name] = td;
      tr.appendChild(td);
    }
    const status = html("span", "evkit-send-status");
    status.dataset.step = step;
    cells.send.appendChild(status);
    return { tr, cells, status, form: null, data: null };
  }

  function makeForm(ent, step) {
    const form = html("span", "evkit-send-form");
    form.dataset.step = step;
    const input = html("input", "evkit-payload");
    input.type = "text";
    input.placeholder = "payload (JSON or text)";
    input.dataset.step = step;
    const button = html("button", "evkit-send", "Send");
    button.type = "button";
    button.dataset.step = step;
    button.addEventListener("click", () => {
      button.disabled = true;
      ent.status.textContent = "sending…";
      ent.status.className = "evkit-send-status evkit-send-pending";
      model.send({ type: "send", step: step, payload: input.value });
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); button.click(); }
    });
    form.append(input, button);
    return form;
  }

  function drawEvents() {
    const rows = model.get("events");
    const sendStatus = model.get("send_status");
    const seen = new Set();
    rows.forEach((row, i) => {
      seen.add(row.step);
      let ent = rowEls.get(row.step);
      if (!ent) {
        ent = makeRow(row.step);
        rowEls.set(row.step, ent);
        if (row.step === selected) ent.tr.dataset.selected = "true";
      }
      if (tbody.children[i] !== ent.tr) tbody.insertBefore(ent.tr, tbody.children[i] || null);
      ent.data = row;
      const c = ent.cells;
      c.step.textContent = row.step;
      c.label.textContent = row.label_at === null || row.label_at === undefined ? row.label : localTime(row.label_at);
      c.listener.textContent = row.listener;
      c.args.textContent = row.args;
      c.args.title = row.args;
      c.state.textContent = row.state;
      c.state.className = `evkit-col-state evkit-state-${row.state}`;
      c.state.title = row.error || "";
      c.attempts.textContent = String(row.attempts);
      for (const col of TIME_COLUMNS) {
        c[col].textContent = row.times[col] || "";
        c[col].title = row.times_iso[col] ? new Date(row.times_iso[col]).toLocaleString() : "";
      }
      c["time left"].textContent = timeLeft(row);
      ent.tr.dataset.state = row.state;
      if (row.inbox_key && !ent.form) {
        ent.form = makeForm(ent, row.step);
        c.send.insertBefore(ent.form, ent.status);
      } else if (!row.inbox_key && ent.form) {
        ent.form.remove();
        ent.form = null;
      }
      if (ent.form) ent.form.title = `send_event(${JSON.stringify(model.get("workflow_id"))}, ${JSON.stringify(row.inbox_key)}, payload)`;
      const st = sendStatus[row.step];
      if (st) {
        ent.status.textContent = st.text;
        ent.status.className = `evkit-send-status ${st.ok ? "evkit-send-ok" : "evkit-send-error"}`;
        if (ent.form && ent.status.dataset.seq !== String(st.seq)) {
          ent.form.querySelector("button").disabled = false;
        }
        ent.status.dataset.seq = String(st.seq);
      }
    });
    for (const [step, ent] of rowEls) {
      if (!seen.has(step)) { ent.tr.remove(); rowEls.delete(step); }
    }
    table.style.display = rows.length ? "" : "none";
    drawPager();
  }

  function tick() {
    for (const ent of rowEls.values()) {
      if (ent.data) ent.cells["time left"].textContent = timeLeft(ent.data);
    }
  }

  function syncClock() { offsetMs = model.get("now") * 1000 - Date.now(); }

  // nodes, edges and width arrive in one message but fire one change each: draw once.
  let dagQueued = false;
  function queueDag() {
    if (dagQueued) return;
    dagQueued = true;
    queueMicrotask(() => { dagQueued = false; drawDag(); });
  }

  const handlers = [
    ["change:nodes", queueDag],
    ["change:edges", queueDag],
    ["change:width", queueDag],
    ["change:event_total", drawPager],
    ["change:event_offset", drawPager],
    ["change:states", paintStates],
    ["change:labels", paintLabels],
    ["change:events", drawEvents],
    ["change:send_status", drawEvents],
    ["change:details", drawDetails],
    ["change:status", drawHeader],
    ["change:error", drawHeader],
    ["change:version", drawHeader],
    ["change:now", syncClock],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  syncClock();
  drawHeader();
  drawDag();
  drawEvents();
  const timer = setInterval(tick, 500);
  const stopQuestions = renderQuestions(model, questionsBox);
  return () => {
    clearInterval(timer);
    stopQuestions();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
