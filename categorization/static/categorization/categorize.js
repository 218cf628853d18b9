// /tag_categorize: select all rows, and follow a running LLM job until it ends (then reload the counts).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    document.querySelectorAll("input[name=tags]").forEach((box) => { box.checked = all.checked; });
  });
  const job = document.getElementById("run-job");
  if (!job || !["queued", "running"].includes(job.dataset.status)) return;
  watchJob(job.dataset.api, (data) => showJob(job, data)).then(() => window.location.reload());
});
