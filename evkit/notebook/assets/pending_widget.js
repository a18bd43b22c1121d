// The view of `workflow.pending()` (anywidget ESM, appended to question_forms.js): every
// open question of this kernel's runs with its form, kept current by the kernel, then
// the questions of runs this kernel does not execute (no form: resume the run to answer).
function renderPending({ model, el }) {
  const root = qEl("div", "evkit-pending");
  const box = qEl("div", "evkit-questions");
  const others = qEl("div", "evkit-questions-elsewhere");
  root.append(box, others);
  el.appendChild(root);
  function drawElsewhere() {
    const rows = model.get("elsewhere") || [];
    others.hidden = rows.length === 0;
    const items = rows.map((q) => {
      const li = qEl("li", "evkit-question-elsewhere", `${q.prompt || q.key} — run ${q.workflow_id}, step ${q.step}, key ${q.key}, waiting since ${questionSince(q.since)}`);
      li.dataset.question = questionId(q);
      return li;
    });
    const list = qEl("ul");
    list.append(...items);
    others.replaceChildren(qEl("div", "evkit-question-meta", "In runs this kernel does not execute (resume a run to answer it here):"), list);
  }
  model.on("change:elsewhere", drawElsewhere);
  drawElsewhere();
  const stop = renderQuestions(model, box, { showRun: true, emptyText: "No open questions." });
  return () => { stop(); model.off("change:elsewhere", drawElsewhere); };
}

export default { render: renderPending };
