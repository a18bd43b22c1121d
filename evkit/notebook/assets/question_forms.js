// Forms for the open questions of `workflow.ask` (anywidget ESM, appended to the run
// widget's and the pending widget's code). Draws one form per entry of the `questions`
// trait from its `fields` (text and number inputs, checkboxes, dropdowns, date and time
// pickers, defaults filled in, descriptions shown), sends {type: "answer", workflow_id,
// step, values} on submit, and shows the kernel's verdict from the `answer_status` trait:
// field errors inline next to their inputs. The kernel validates; nothing is stored until
// it accepts. It never writes traits: the kernel owns all state.

function qEl(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function questionId(q) {
  return `${q.workflow_id}/${q.step}`;
}

function questionSince(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// A field's input element, with its default filled in.
function fieldInput(field, id) {
  const def = field.default;
  let input;
  if (field.input === "checkbox") {
    input = qEl("input", "evkit-answer-input");
    input.type = "checkbox";
    input.checked = def === true;
  } else if (field.input === "select") {
    input = qEl("select", "evkit-answer-input");
    const hasDefault = Object.prototype.hasOwnProperty.call(field, "default");
    if (!hasDefault || field.nullable) {
      const blank = qEl("option", "", field.nullable ? "(none)" : "— choose —");
      blank.value = "";
      input.appendChild(blank);
    }
    for (const option of field.options || []) {
      const o = qEl("option", "", String(option));
      o.value = JSON.stringify(option);
      if (hasDefault && JSON.stringify(def) === o.value) o.selected = true;
      input.appendChild(o);
    }
  } else if (field.input === "json") {
    input = qEl("textarea", "evkit-answer-input");
    input.rows = 2;
    input.placeholder = "JSON";
    if (def !== undefined && def !== null) input.value = JSON.stringify(def);
  } else {
    input = qEl("input", "evkit-answer-input");
    input.type = { integer: "number", number: "number", date: "date", time: "time", datetime: "datetime-local" }[field.input] || "text";
    if (field.input === "integer") input.step = "1";
    if (field.input === "number") input.step = "any";
    if (def !== undefined && def !== null) input.value = String(def);
  }
  input.id = id;
  input.name = field.name;
  input.dataset.field = field.name;
  return input;
}

// What a field's input holds, as the JSON the kernel validates; `undefined`: left empty
// (the model's default applies, or the kernel says the field is required).
function fieldValue(field, input) {
  if (field.input === "checkbox") return input.checked;
  const text = input.value;
  if (text === "") return field.nullable && field.required ? null : undefined;
  if (field.input === "select") return JSON.parse(text);
  if (field.input === "integer" || field.input === "number") {
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  if (field.input === "json") {
    try { return JSON.parse(text); } catch (e) { return text; }
  }
  return text;
}

export function answerValues(q, form) {
  const values = {};
  for (const field of q.fields) {
    const input = form.querySelector(`[data-field="${CSS.escape(field.name)}"].evkit-answer-input`);
    if (!input) continue;
    const value = fieldValue(field, input);
    if (value !== undefined) values[field.name] = value;
  }
  return values;
}

function buildQuestionForm(model, q, showRun) {
  const id = questionId(q);
  const form = qEl("form", "evkit-question");
  form.dataset.question = id;
  form.dataset.run = q.workflow_id;
  form.dataset.step = q.step;
  form.noValidate = true;  // the kernel validates: one set of rules, one set of messages
  form.appendChild(qEl("div", "evkit-question-prompt", q.prompt || q.key));
  const where = showRun ? `run ${q.workflow_id} · step ${q.step}` : `step ${q.step}`;
  const meta = qEl("div", "evkit-question-meta", `${where} · key ${q.key} · waiting since ${questionSince(q.since)}`);
  meta.title = `workflow.send_event(${JSON.stringify(q.workflow_id)}, ${JSON.stringify(q.key)}, {...})`;
  form.appendChild(meta);
  if (q.description) form.appendChild(qEl("div", "evkit-question-description", q.description));
  q.fields.forEach((field, i) => {
    const row = qEl("div", "evkit-answer-field");
    row.dataset.field = field.name;
    const inputId = `evkit-${id}-${i}`.replace(/[^A-Za-z0-9_-]/g, "_") + "-" + Math.random().toString(36).slice(2, 8);
    const label = qEl("label", "evkit-answer-label", field.label + (field.required ? " *" : ""));
    label.htmlFor = inputId;
    const input = fieldInput(field, inputId);
    row.append(label, input);
    if (field.description) row.appendChild(qEl("small", "evkit-answer-help", field.description));
    const error = qEl("span", "evkit-answer-error");
    error.dataset.field = field.name;
    error.setAttribute("role", "alert");
    row.appendChild(error);
    form.appendChild(row);
  });
  const actions = qEl("div", "evkit-answer-actions");
  const button = qEl("button", "evkit-answer-submit", "Answer");
  button.type = "submit";
  const status = qEl("span", "evkit-answer-status");
  status.setAttribute("role", "status");
  actions.append(button, status);
  form.appendChild(actions);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    button.disabled = true;
    status.textContent = "checking…";
    status.className = "evkit-answer-status evkit-answer-pending";
    model.send({ type: "answer", workflow_id: q.workflow_id, step: q.step, values: answerValues(q, form) });
  });
  return { form, button, status, seq: null };
}

function showAnswerStatus(ent, st) {
  if (!st || ent.seq === st.seq) return;
  ent.seq = st.seq;
  for (const span of ent.form.querySelectorAll(".evkit-answer-error")) span.textContent = "";
  for (const input of ent.form.querySelectorAll(".evkit-answer-input")) input.removeAttribute("aria-invalid");
  const general = [];
  for (const [name, message] of st.errors || []) {
    const span = name ? ent.form.querySelector(`.evkit-answer-error[data-field="${CSS.escape(name.split(".")[0])}"]`) : null;
    if (span) {
      span.textContent = span.textContent ? `${span.textContent}; ${message}` : message;
      const input = ent.form.querySelector(`.evkit-answer-input[data-field="${CSS.escape(name.split(".")[0])}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      general.push(name ? `${name}: ${message}` : message);
    }
  }
  ent.status.textContent = st.ok ? st.text : [st.text, ...general].filter(Boolean).join(" ");
  ent.status.className = `evkit-answer-status ${st.ok ? "evkit-answer-ok" : "evkit-answer-invalid"}`;
  ent.form.dataset.answered = st.ok ? "true" : "false";
  ent.button.disabled = Boolean(st.ok);
}

// Keeps `box` showing a form per open question; returns the function that stops it.
// Forms of questions still open are kept as they are, so what was typed stays.
function renderQuestions(model, box, { showRun = false, emptyText = "" } = {}) {
  const forms = new Map();
  function draw() {
    const questions = model.get("questions") || [];
    const statuses = model.get("answer_status") || {};
    const open = new Set();
    questions.forEach((q, i) => {
      const id = questionId(q);
      open.add(id);
      let ent = forms.get(id);
      if (!ent || ent.attempt !== q.attempt) {
        if (ent) ent.form.remove();
        ent = buildQuestionForm(model, q, showRun);
        ent.attempt = q.attempt;
        forms.set(id, ent);
      }
      const list = box.querySelectorAll(":scope > .evkit-question");
      if (list[i] !== ent.form) box.insertBefore(ent.form, list[i] || null);
    });
    for (const [id, ent] of forms) {
      if (!open.has(id)) { ent.form.remove(); forms.delete(id); }
    }
    for (const [id, ent] of forms) showAnswerStatus(ent, statuses[id]);
    box.hidden = questions.length === 0 && !emptyText;
    let empty = box.querySelector(":scope > .evkit-questions-empty");
    if (emptyText && questions.length === 0) {
      if (!empty) { empty = qEl("div", "evkit-questions-empty", emptyText); box.appendChild(empty); }
    } else if (empty) {
      empty.remove();
    }
  }
  model.on("change:questions", draw);
  model.on("change:answer_status", draw);
  draw();
  return () => {
    model.off("change:questions", draw);
    model.off("change:answer_status", draw);
  };
}
