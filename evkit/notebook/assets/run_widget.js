// The browser half of evkit's RunWidget (anywidget ESM): draws the DAG once per set of
// nodes (laying it out here unless the kernel sent graphviz's positions for an ungrouped
// DAG), recolours nodes when the `states` trait changes, keeps the event table's page in
// sync, and sends {type: "send", step, payload} when a "Send" button of a waiting manual
// event is pressed and {type: "page", offset} for another page of the table. Selecting a
// step (a click on its node or row, or Enter/Space on it; Escape closes) sends
// {type: "details", step} and shows the `details` trait the kernel answers with
// ({type: "details", step: null} when closed). Big fan-outs draw as group nodes that
// expand on click; the toolbar zooms, fits, searches and opens the timeline
// ({type: "timeline", open}: the kernel fills the `timeline` trait while it is open).
// It never writes traits: the kernel owns all state. Plain ESM, no build step.
const SVGNS = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 30;
const GAP_X = 60;
const GAP_Y = 14;
const MARGIN = 10;
const LABEL_CHARS = 22;
const GROUP_LABEL_CHARS = 20;  // a group's bold first line (grouping.py: GROUP_LABEL_CHARS)
const MIN_BOX_H = 90;        // the DAG's box: as tall as the drawing, within these bounds
const MAX_BOX_H = 520;
const MIN_ZOOM = 0.02;
const MAX_ZOOM = 4;
const FIRST_MIN_ZOOM = 0.5;  // below this the first view shows the top-left part, readable
const PAN_STEP = 60;
const TL_LABEL_W = 170;      // the timeline: label column, row and axis heights (px)
const TL_ROW_H = 16;
const TL_AXIS_H = 22;
const PHASES = ["run", "failed", "cancelled", "waiting", "checkpoint", "commit"];
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

// The same grouping as evkit/notebook/grouping.py's group_steps (tests compare the two):
// steps of one kind and base name ("prep" for prep, prep_1, ...) in one layer of a DAG
// of more than GROUP_ABOVE steps draw as one group node when there are GROUP_MIN or
// more, unless the group's id is in `expanded`. `nodes` ({id, kind}) are in topological
// order. An expanded group of more than EXPAND_LIMIT steps draws that many and keeps the
// rest in a group node (id + "+"), so no click draws thousands of boxes; steps in
// `pinned` (found by a search) are drawn on their own wherever they are.
export const GROUP_MIN = 5;
export const GROUP_ABOVE = 24;
export const EXPAND_LIMIT = 200;

export function baseName(id) { return id.replace(/_\d+$/, ""); }

export function groupSteps(nodes, edges, expanded, pinned) {
  const open = expanded || new Set();
  const own = pinned || new Set();
  const known = new Set(nodes.map((n) => n.id));
  const upstream = new Map(nodes.map((n) => [n.id, []]));
  for (const [a, b] of edges) if (known.has(a) && upstream.has(b)) upstream.get(b).push(a);
  const layer = new Map();
  const keyOf = new Map();
  const members = new Map();
  const rank = new Map();  // step id -> its index among its group's steps
  for (const n of nodes) {
    let index = 0;
    for (const u of upstream.get(n.id)) index = Math.max(index, (layer.has(u) ? layer.get(u) : -1) + 1);
    layer.set(n.id, index);
    const key = `group:${n.kind}:${baseName(n.id)}@${index}`;
    keyOf.set(n.id, key);
    if (!members.has(key)) members.set(key, []);
    rank.set(n.id, members.get(key).length);
    members.get(key).push(n.id);
  }
  const grouping = nodes.length > GROUP_ABOVE;
  const nodeOf = new Map();
  const drawn = [];
  const made = new Set();
  nodes.forEach((n, position) => {
    const key = keyOf.get(n.id);
    const same = members.get(key);
    const opened = grouping && same.length >= GROUP_MIN;
    const entry = (id, group, list) => ({ id, kind: n.kind, name: group ? baseName(n.id) : n.id, members: list, group, opened, layer: layer.get(n.id), position });
    if (own.has(n.id)) {
      nodeOf.set(n.id, n.id);
      drawn.push(entry(n.id, false, [n.id]));
    } else if (grouping && same.length >= GROUP_MIN && !open.has(key)) {
      nodeOf.set(n.id, key);
      if (!made.has(key)) { made.add(key); drawn.push(entry(key, true, same)); }
    } else if (grouping && same.length > EXPAND_LIMIT && rank.get(n.id) >= EXPAND_LIMIT) {
      const rest = key + "+";
      nodeOf.set(n.id, rest);
      if (!made.has(rest)) {
        made.add(rest);
        drawn.push(entry(rest, true, same.slice(EXPAND_LIMIT).filter((m) => !own.has(m))));
      }
    } else {
      nodeOf.set(n.id, n.id);
      drawn.push(entry(n.id, false, [n.id]));
    }
  });
  drawn.sort((a, b) => a.layer - b.layer || a.position - b.position);
  const seen = new Set();
  const drawnEdges = [];
  for (const n of nodes) {
    const b = nodeOf.get(n.id);
    for (const u of upstream.get(n.id)) {
      const a = nodeOf.get(u);
      const k = a + "\u0000" + b;
      if (!seen.has(k)) { seen.add(k); drawnEdges.push([a, b]); }
    }
  }
  return { nodes: drawn, edges: drawnEdges, nodeOf };
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

// A round step for an axis: 1, 2 or 5 times a power of ten.
export function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw > 0 ? raw : 1)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function formatSeconds(t, step) {
  if (step >= 60) return `${(t / 60).toFixed(step % 60 ? 1 : 0)} min`;
  const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
  return `${t.toFixed(digits)} s`;
}

// A group's first line, "prep ×60", its name shortened so the line fits the box (bold).
export function groupText(name, count, more) {
  const suffix = ` ×${count.toLocaleString("en")}${more || ""}`;
  const room = Math.max(4, GROUP_LABEL_CHARS - suffix.length);
  return (name.length <= room ? name : name.slice(0, room - 1) + "…") + suffix;
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
  for (const name of HEAD) headRow.appendChild(html("th", `evkit-col-${name.replace(" ", "-")}`, name));
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
  // The toolbar: search, zoom, fit, collapse the opened groups, the timeline.
  const toolbar = html("div", "evkit-toolbar");
  toolbar.setAttribute("role", "toolbar");
  toolbar.setAttribute("aria-label", "DAG tools");
  const search = html("input", "evkit-search");
  search.type = "search";
  search.placeholder = "find a step (name or key)";
  search.setAttribute("aria-label", "find a step by name or key; Enter goes to the next");
  const searchCount = html("span", "evkit-search-count");
  searchCount.setAttribute("aria-live", "polite");
  const tool = (cls, text, title, fn) => {
    const b = html("button", cls, text);
    b.type = "button";
    b.title = title;
    b.setAttribute("aria-label", title);
    b.addEventListener("click", fn);
    return b;
  };
  const centre = () => { const [w, h] = boxSize(); return [w / 2, h / 2]; };
  const zoomIn = tool("evkit-zoom-in", "+", "Zoom in (+)", () => zoomAt(1.25, ...centre()));
  const zoomOut = tool("evkit-zoom-out", "−", "Zoom out (-)", () => zoomAt(0.8, ...centre()));
  const fitButton = tool("evkit-fit", "Fit", "Fit the DAG to the view (0)", () => { touched = true; fit(); });
  const collapseButton = tool("evkit-collapse", "Collapse groups", "Collapse the groups you opened", () => collapseAll());
  const timelineButton = tool("evkit-timeline-toggle", "Timeline", "Show each step's spans on a time axis", () => toggleTimeline());
  timelineButton.setAttribute("aria-pressed", "false");
  toolbar.append(search, searchCount, zoomIn, zoomOut, fitButton, collapseButton, timelineButton);
  search.addEventListener("input", () => runSearch(true));
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); nextMatch(e.shiftKey ? -1 : 1); }
    else if (e.key === "Escape" && search.value) { e.preventDefault(); e.stopPropagation(); search.value = ""; runSearch(true); }
  });
  const timelineBox = html("div", "evkit-timeline");
  timelineBox.hidden = true;
  timelineBox.setAttribute("role", "region");
  timelineBox.setAttribute("aria-label", "timeline");
  const questionsBox = html("div", "evkit-questions");  // workflow.ask forms: question_forms.js
  root.append(header, counts, questionsBox, toolbar, dagBox, timelineBox, panel, tableBox, pager);
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

  // ---------------------------------------------------------------- the DAG: groups, zoom, search

  let expanded = new Set();  // ids of the group nodes the user opened
  let pinned = new Set();    // steps a search went to: drawn on their own
  let groupEls = new Map();  // group node id -> {g, title, text, sub, bar, members}
  let nodeOf = new Map();    // step id -> the id of the drawn box that shows it
  let placed = new Map();    // drawn id -> {x, y}
  let size = { width: 0, height: 0 };
  const view = { k: 1, x: 0, y: 0 };
  let touched = false;       // the user zoomed or panned: resizes no longer refit
  let viewport = null;
  let matches = [];          // steps matching the search, in step order
  let current = -1;          // the match Enter went to last

  function boxSize() {
    const r = canvas.getBoundingClientRect();
    return [r.width || 800, r.height || canvasHeight()];
  }
  function canvasHeight() { return Math.max(MIN_BOX_H, Math.min(MAX_BOX_H, size.height)); }
  function applyView() {
    if (viewport) viewport.setAttribute("transform", `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})`);
    root.dataset.zoom = view.k.toFixed(3);
  }
  // Fit the whole drawing in the box, never enlarged past 1:1; with `minK`, a drawing that
  // would get smaller than that is shown from its top-left corner instead (first render).
  function fit(minK) {
    const [w, h] = boxSize();
    let k = Math.min(1, (w - 2 * MARGIN) / size.width, (h - 2 * MARGIN) / size.height);
    k = Math.max(MIN_ZOOM, k);
    if (minK && k < minK) {
      view.k = minK; view.x = 0; view.y = 0;
    } else {
      view.k = k; view.x = (w - size.width * k) / 2; view.y = (h - size.height * k) / 2;
    }
    applyView();
  }
  function zoomAt(factor, px, py) {
    const k = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, view.k * factor));
    view.x = px - ((px - view.x) * k) / view.k;
    view.y = py - ((py - view.y) * k) / view.k;
    view.k = k;
    touched = true;
    applyView();
  }
  // Centre the view on a box, at a zoom where its label reads (at least 1:1).
  function centerOn(id, readable) {
    const p = placed.get(id);
    if (!p) return;
    if (readable) view.k = Math.max(view.k, 1);
    const [w, h] = boxSize();
    view.x = w / 2 - p.x * view.k;
    view.y = h / 2 - p.y * view.k;
    touched = true;
    applyView();
  }
  // A node reached with Tab is scrolled into the box (the SVG does not scroll itself).
  function keepVisible(id) {
    const p = placed.get(id);
    if (!p) return;
    const [w, h] = boxSize();
    const sx = p.x * view.k + view.x, sy = p.y * view.k + view.y;
    const hw = (NODE_W / 2) * view.k, hh = (NODE_H / 2) * view.k;
    if (sx - hw >= 0 && sx + hw <= w && sy - hh >= 0 && sy + hh <= h) return;
    centerOn(id);
  }

  const canvas = svg("svg", { class: "evkit-dag", width: "100%", tabindex: 0, role: "group",
    "aria-label": "DAG of the run: arrow keys pan, + and - zoom, 0 fits; Tab to the steps" });
  dagBox.appendChild(canvas);
  // The wheel zooms once the DAG has the focus (a click in it, Tab), or with Ctrl/Cmd held
  // (a trackpad pinch): otherwise it scrolls the notebook past the widget, as elsewhere.
  canvas.addEventListener("wheel", (e) => {
    if (!(e.ctrlKey || e.metaKey || canvas.contains(document.activeElement))) return;
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || e.target.closest(".evkit-node, .evkit-group")) return;
    drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
    canvas.focus({ preventScroll: true });
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.add("evkit-dragging");
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    view.x += e.clientX - drag.x; view.y += e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    touched = true;
    applyView();
  });
  const endDrag = () => { drag = null; canvas.classList.remove("evkit-dragging"); };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("keydown", (e) => {
    const [w, h] = boxSize();
    const keys = { "+": () => zoomAt(1.25, w / 2, h / 2), "=": () => zoomAt(1.25, w / 2, h / 2),
      "-": () => zoomAt(0.8, w / 2, h / 2), "0": () => { touched = true; fit(); },
      ArrowLeft: () => { view.x += PAN_STEP; }, ArrowRight: () => { view.x -= PAN_STEP; },
      ArrowUp: () => { view.y += PAN_STEP; }, ArrowDown: () => { view.y -= PAN_STEP; } };
    const act = keys[e.key];
    if (!act) return;
    if (e.key.startsWith("Arrow") && e.target !== canvas) return;  // arrows on a node: the page's
    e.preventDefault();
    act();
    touched = true;
    applyView();
  });
  canvas.addEventListener("focusin", (e) => {
    const box = e.target.closest(".evkit-node, .evkit-group");
    if (box) keepVisible(box.dataset.step || box.dataset.group);
  });
  // The view is rendered before it is attached (zero width): fit once it has a size.
  const resized = typeof ResizeObserver === "undefined" ? null
    : new ResizeObserver(() => { if (!touched && size.width) fit(FIRST_MIN_ZOOM); });
  if (resized) resized.observe(canvas);

  function toggleGroup(id) {
    const ent = groupEls.get(id);
    if (!ent) return;
    const anchor = ent.members[0];
    const key = id.endsWith("+") ? id.slice(0, -1) : id;
    expanded.add(key);
    drawDag();
    const shown = nodeOf.get(anchor);
    centerOn(shown, true);
    const target = nodeEls.get(anchor) || groupEls.get(shown);
    if (target) target.g.focus({ preventScroll: true });
  }

  function collapseAll() {
    if (!expanded.size && !pinned.size) return;
    expanded = new Set();
    pinned = new Set();
    drawDag();
    touched = false;
    fit(FIRST_MIN_ZOOM);
  }

  function drawDag() {
    const nodes = model.get("nodes");
    const edges = model.get("edges");
    const drawing = groupSteps(nodes, edges, expanded, pinned);
    const grouped = drawing.nodes.some((d) => d.group);
    nodeOf = drawing.nodeOf;
    let width = model.get("width");
    let height = model.get("height");
    // graphviz's positions are for every step: a grouped drawing is laid out here.
    const byKernel = !grouped && width > 0 && nodes.every((n) => n.x !== undefined);
    if (byKernel) {
      placed = new Map(nodes.map((n) => [n.id, { x: n.x, y: n.y }]));
    } else {
      const laid = layered(drawing.nodes.map((d) => d.id), drawing.edges);
      placed = new Map([...laid.positions].map(([id, [x, y]]) => [id, { x, y }]));
      ({ width, height } = laid);
    }
    const first = size.width === 0;
    size = { width, height };
    root.dataset.layout = byKernel ? "kernel" : "browser";
    root.dataset.drawn = String(drawing.nodes.length);
    canvas.setAttribute("height", String(canvasHeight()));
    viewport = svg("g", { class: "evkit-viewport" });
    const edgeLayer = svg("g", { class: "evkit-edges" });
    for (const [a, b] of drawing.edges) {
      if (placed.has(a) && placed.has(b)) edgeLayer.appendChild(svg("path", { class: "evkit-edge", d: edgePath(placed.get(a), placed.get(b)) }));
    }
    viewport.appendChild(edgeLayer);
    nodeEls = new Map();
    groupEls = new Map();
    for (const d of drawing.nodes) {
      const p = placed.get(d.id);
      if (d.group) {
        const g = svg("g", { class: `evkit-group evkit-kind-${d.kind}`, "data-group": d.id, "data-count": d.members.length,
          tabindex: 0, role: "button", "aria-expanded": "false" });
        const title = svg("title");
        const x = p.x - NODE_W / 2, y = p.y - NODE_H / 2, rx = d.kind === "event" ? 12 : 3;
        const back = svg("rect", { class: "evkit-group-back", x: x + 4, y: y - 4, width: NODE_W, height: NODE_H, rx });
        const rect = svg("rect", { class: "evkit-group-box", x, y, width: NODE_W, height: NODE_H, rx });
        const bar = svg("g", { class: "evkit-group-bar" });
        const text = svg("text", { class: "evkit-group-name", x: p.x, y: p.y - 2, "text-anchor": "middle" });
        const sub = svg("text", { class: "evkit-group-counts", x: p.x, y: p.y + 10, "text-anchor": "middle" });
        const more = d.id.endsWith("+") ? " more" : "";
        text.textContent = groupText(d.name, d.members.length, more);
        g.append(title, back, rect, bar, text, sub);
        g.addEventListener("click", () => toggleGroup(d.id));
        g.addEventListener("keydown", (e) => {
          if (e.target === g && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); toggleGroup(d.id); }
        });
        viewport.appendChild(g);
        groupEls.set(d.id, { g, title, text, sub, bar, members: d.members, name: d.name, x, y });
        continue;
      }
      const g = svg("g", { class: "evkit-node", "data-step": d.id, tabindex: 0, role: "button" });
      if (d.opened) g.setAttribute("data-in-group", "true");  // its group was opened
      g.addEventListener("click", () => select(d.id, g));
      g.addEventListener("keydown", (e) => onActivateKey(e, d.id, g));
      const title = svg("title");
      const rect = svg("rect", { x: p.x - NODE_W / 2, y: p.y - NODE_H / 2, width: NODE_W, height: NODE_H, rx: d.kind === "event" ? 12 : 3 });
      const text = svg("text", { x: p.x, y: p.y + 4, "text-anchor": "middle" });
      g.append(title, rect, text);
      viewport.appendChild(g);
      nodeEls.set(d.id, { g, title, text, kind: d.kind });
    }
    canvas.replaceChildren(viewport);
    collapseButton.disabled = expanded.size === 0 && pinned.size === 0;
    if (first || !touched) fit(FIRST_MIN_ZOOM); else applyView();
    if (selected !== null) markSelected(selected, true);
    paintLabels();
    paintStates();
    markMatches();
    if (timelineOpen) drawTimeline();
  }

  function shorten(text, chars) { return text.length <= chars ? text : text.slice(0, chars - 1) + "…"; }

  function labelOf(id, labels) {
    const value = labels[id];
    if (value === undefined || value === null) return "";
    return typeof value === "string" ? value : localTime(value.at);
  }

  function paintLabels() {
    const labels = model.get("labels") || {};
    for (const [id, ent] of nodeEls) {
      ent.text.textContent = nodeText(id, labels[id]);
      ent.g.setAttribute("aria-label", `${ent.text.textContent}: show details`);
    }
    if (matches.length || search.value) runSearch(false);
  }

  function paintStates() {
    const states = model.get("states");
    const tally = new Map();
    let total = 0;
    for (const n of model.get("nodes")) {
      const state = states[n.id] || "pending";
      tally.set(state, (tally.get(state) || 0) + 1);
      total += 1;
    }
    for (const [id, ent] of nodeEls) {
      const state = states[id] || "pending";
      ent.g.setAttribute("class", `evkit-node evkit-kind-${ent.kind} evkit-state-${state}`);
      ent.g.setAttribute("data-state", state);
      ent.title.textContent = `${id}: ${state}`;
    }
    for (const [id, ent] of groupEls) paintGroup(id, ent, states);
    const parts = STATE_ORDER.filter((s) => tally.has(s)).map((s) => {
      const part = html("span", `evkit-count evkit-state-${s}`, `${tally.get(s).toLocaleString("en")} ${s}`);
      part.dataset.state = s;
      return part;
    });
    counts.replaceChildren(html("span", "", `${total.toLocaleString("en")} steps:`), ...parts);
  }

  // A group's second line and bar: how many of its steps are in each state, most first.
  function paintGroup(id, ent, states) {
    const tally = new Map();
    for (const m of ent.members) { const s = states[m] || "pending"; tally.set(s, (tally.get(s) || 0) + 1); }
    const order = STATE_ORDER.filter((s) => tally.has(s));
    const byCount = [...order].sort((a, b) => tally.get(b) - tally.get(a));
    const words = order.map((s) => `${tally.get(s).toLocaleString("en")} ${s}`);
    const short = byCount.slice(0, 2).map((s) => `${tally.get(s).toLocaleString("en")} ${s}`).join(", ") + (byCount.length > 2 ? ", …" : "");
    ent.sub.textContent = short;
    const summary = `${ent.name} ×${ent.members.length.toLocaleString("en")}: ${words.join(", ")}`;
    ent.title.textContent = `${summary} (click to show each step)`;
    ent.g.setAttribute("aria-label", `${summary}: expand`);
    ent.g.dataset.counts = words.join(", ");
    ent.g.dataset.state = byCount[0];
    let x = ent.x + 1;
    const parts = [];
    for (const s of order) {
      const w = ((NODE_W - 2) * tally.get(s)) / ent.members.length;
      parts.push(svg("rect", { class: `evkit-seg evkit-state-${s}`, x: x.toFixed(2), y: ent.y + NODE_H - 5, width: w.toFixed(2), height: 4 }));
      x += w;
    }
    ent.bar.replaceChildren(...parts);
  }

  // Search: steps whose id or label contains the text; their boxes (or their group's) are
  // marked, Enter goes to the next one (opening its group), Escape clears.
  function runSearch(fromTyping) {
    const q = search.value.trim().toLowerCase();
    const labels = model.get("labels") || {};
    matches = [];
    if (q) {
      for (const n of model.get("nodes")) {
        if (n.id.toLowerCase().includes(q) || labelOf(n.id, labels).toLowerCase().includes(q)) matches.push(n.id);
      }
    }
    if (fromTyping) current = -1;
    searchCount.textContent = !q ? "" : matches.length ? `${matches.length.toLocaleString("en")} match${matches.length === 1 ? "" : "es"}` : "no step matches";
    markMatches();
  }

  function markMatches() {
    const hit = new Map();
    for (const id of matches) { const box = nodeOf.get(id); hit.set(box, (hit.get(box) || 0) + 1); }
    for (const [id, ent] of nodeEls) {
      if (hit.has(id)) ent.g.setAttribute("data-match", "true"); else ent.g.removeAttribute("data-match");
      if (current >= 0 && matches[current] === id) ent.g.setAttribute("data-current", "true"); else ent.g.removeAttribute("data-current");
    }
    for (const [id, ent] of groupEls) {
      if (hit.has(id)) ent.g.setAttribute("data-match", String(hit.get(id))); else ent.g.removeAttribute("data-match");
    }
  }

  function nextMatch(step) {
    if (!matches.length) return;
    current = (current + step + matches.length) % matches.length;
    const id = matches[current];
    const box = nodeOf.get(id);
    if (box !== id) {
      if (box.endsWith("+")) pinned.add(id);  // beyond the opened part of a big group
      else expanded.add(box);
      drawDag();
    }
    centerOn(nodeOf.get(id), true);
    markMatches();
    searchCount.textContent = `${current + 1} of ${matches.length.toLocaleString("en")}: ${id}`;
  }

  // ---------------------------------------------------------------- the timeline

  let timelineOpen = false;

  function toggleTimeline() {
    timelineOpen = !timelineOpen;
    timelineButton.setAttribute("aria-pressed", String(timelineOpen));
    timelineBox.hidden = !timelineOpen;
    model.send({ type: "timeline", open: timelineOpen });
    drawTimeline();
  }

  // One row per drawn box (a group's steps share its row), bars in seconds since the run
  // was created: what plot_timeline draws, from the same store rows.
  function drawTimeline() {
    if (!timelineOpen) return;
    const data = model.get("timeline") || {};
    const bars = data.bars || [];
    if (!bars.length) {
      timelineBox.replaceChildren(html("div", "evkit-timeline-empty", data.bars ? "No step has started yet." : "loading…"));
      return;
    }
    const labels = model.get("labels") || {};
    const rows = new Map();
    for (const bar of bars) {
      const box = nodeOf.get(bar[0]) || bar[0];
      if (!rows.has(box)) rows.set(box, []);
      rows.get(box).push(bar);
    }
    let span = 0;
    for (const bar of bars) span = Math.max(span, bar[3]);
    span = span || 1;
    const width = Math.max(320, (timelineBox.clientWidth || dagBox.clientWidth || 800) - 4);
    const plotW = width - TL_LABEL_W - 10;
    const height = TL_AXIS_H + rows.size * TL_ROW_H + 4;
    const chart = svg("svg", { class: "evkit-timeline-chart", width, height, viewBox: `0 0 ${width} ${height}` });
    const scale = (t) => TL_LABEL_W + (t / span) * plotW;
    const tick = niceStep(span / 6);
    const axis = svg("g", { class: "evkit-timeline-axis" });
    for (let t = 0; t <= span + 1e-9; t += tick) {
      const x = scale(t);
      axis.append(svg("line", { x1: x, x2: x, y1: TL_AXIS_H - 4, y2: height }),
        Object.assign(svg("text", { x, y: TL_AXIS_H - 7, "text-anchor": "middle" }), { textContent: `+${formatSeconds(t, tick)}` }));
    }
    chart.appendChild(axis);
    let y = TL_AXIS_H;
    for (const [box, list] of rows) {
      const row = svg("g", { class: "evkit-timeline-row", "data-row": box });
      const group = groupEls.get(box);
      const name = group ? `${group.name} ×${group.members.length}` : nodeText(box, labels[box]);
      row.appendChild(Object.assign(svg("text", { class: "evkit-timeline-label", x: TL_LABEL_W - 6, y: y + TL_ROW_H - 4, "text-anchor": "end" }), { textContent: name }));
      for (const [step, phase, start, end] of list) {
        const x = scale(start);
        const w = Math.max(1, scale(end) - x);
        const rect = svg("rect", { class: `evkit-bar evkit-phase-${phase}`, "data-step": step, "data-phase": phase, x: x.toFixed(1), y: y + 2, width: w.toFixed(1), height: TL_ROW_H - 4 });
        rect.appendChild(Object.assign(svg("title"), { textContent: `${step}: ${phase} +${start.toFixed(3)} s → +${end.toFixed(3)} s (${(end - start).toFixed(3)} s)` }));
        row.appendChild(rect);
      }
      chart.appendChild(row);
      y += TL_ROW_H;
    }
    const head = html("div", "evkit-timeline-head",
      `${rows.size.toLocaleString("en")} rows, ${bars.length.toLocaleString("en")} spans; seconds since the run was created${data.origin ? " at " + localTime(data.origin) : ""}`);
    const legend = html("span", "evkit-timeline-legend");
    const used = new Set(bars.map((bar) => bar[1]));
    for (const phase of PHASES.filter((p) => used.has(p))) legend.appendChild(html("span", `evkit-phase-key evkit-phase-${phase}`, phase));
    head.appendChild(legend);
    timelineBox.replaceChildren(head, chart);
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
      // Rows that did not change are not rewritten: a rewritten cell is re-measured.
      const key = JSON.stringify(row);
      if (ent.key !== key) {
        ent.key = key;
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
    ["change:timeline", drawTimeline],
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
    if (resized) resized.disconnect();
    stopQuestions();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
