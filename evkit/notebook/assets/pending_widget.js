// The view of `workflow.pending()` (anywidget ESM, appended to question_forms.js): every
// open question of this kernel's runs with its form, kept current by the kernel.
function renderPending({ model, el }) {
  const root = qEl("div", "evkit-pending");
  const box = qEl("div", "evkit-questions");
  root.appendChild(box);
  el.appendChild(root);
  return renderQuestions(model, box, { showRun: true, emptyText: "No open questions." });
}

export default { render: renderPending };
