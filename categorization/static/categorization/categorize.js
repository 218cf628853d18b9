// /tag_categorize: select all rows (tagsite/app.js shows a tag's similar tags), and follow a running LLM job until it ends (then reload the counts).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Each row's category select holds only its current value in the HTML; the options come from one template.
  const options = document.getElementById("category-options");
  if (options) document.querySelectorAll("select.category-select").forEach((select) => {
    const current = select.value;
    select.replaceChildren(options.content.cloneNode(true));
    select.value = current;
  });
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    document.querySelectorAll("input[name=tags]").forEach((box) => { box.checked = all.checked; });
  });
  const job = document.getElementById("run-job");
  if (!job || !["queued", "running"].includes(job.dataset.status)) return;
  watchJob(job.dataset.api, (data) => showJob(job, data)).then(() => window.location.reload());
});
