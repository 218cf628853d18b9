// /tag_categorize: select all rows, and follow a running LLM job until it ends (then reload the counts).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    document.querySelectorAll("input[name=tags]").forEach((box) => { box.checked = all.checked; });
  });
  const job = document.getElementById("run-job");
  if (!job || !["queued", "running"].includes(job.dataset.status)) return;
  const timer = setInterval(async () => {
    const response = await fetch(job.dataset.api, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    job.querySelector(".status").textContent = data.status;
    job.querySelector(".status").className = `status ${data.status}`;
    job.querySelector("progress").max = data.total || 1;
    job.querySelector("progress").value = data.current;
    job.querySelector(".numbers").textContent = `${data.current}/${data.total ?? "?"}`;
    job.querySelector(".message").textContent = data.message;
    if (data.status === "succeeded" || data.status === "failed") {
      clearInterval(timer);
      window.location.reload();
    }
  }, 1000);
});
