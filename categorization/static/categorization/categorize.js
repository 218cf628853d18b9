// /tag_categorize: select all rows, show a tag's similar tags, and follow a running LLM job until it ends (then reload the counts).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Each row's category select holds only its current value in the HTML; the options come from one template.
  const options = document.getElementById("category-options");
  if (options) document.querySelectorAll("select.category-select").forEach((select) => {
    select.replaceChildren(options.content.cloneNode(true));
    select.value = select.dataset.current;
  });
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    document.querySelectorAll("input[name=tags]").forEach((box) => { box.checked = all.checked; });
  });
  // Similar tags (embedding neighbours, /api/tags/<id>/similar/), fetched when a row's "similar" is first opened;
  // the table holds the URL once (tag 0), not each of its 100 rows.
  const similarUrl = document.querySelector(".tag-table")?.dataset.similarUrl || "";
  document.querySelectorAll("details.similar").forEach((details) => {
    details.addEventListener("toggle", async () => {
      const list = details.querySelector(".similar-list");
      if (!details.open || list.dataset.loaded) return;
      list.dataset.loaded = "1";
      list.textContent = "…";
      const url = similarUrl.replace("/0/", `/${details.dataset.tag}/`);
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const rows = response.ok ? await response.json() : [];
      list.textContent = rows.map((row) => `${row.name} (${row.similarity.toFixed(2)})`).join(", ") || "none yet";
    });
  });
  const job = document.getElementById("run-job");
  if (!job || !["queued", "running"].includes(job.dataset.status)) return;
  watchJob(job.dataset.api, (data) => showJob(job, data)).then(() => window.location.reload());
});
