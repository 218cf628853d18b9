// The review page's "Tag the untagged backlog" form: start the job through the API and follow it in place.
"use strict";

(function () {
  const backlog = document.getElementById("backlog");
  if (!backlog) return;
  const job = backlog.querySelector(".job");
  const status = document.getElementById("review-status");
  const button = backlog.querySelector("button");
  const show = (text) => { status.textContent = text; status.className = "error"; };
  const token = csrfToken;  // app.js

  async function follow(url) {  // the form stays disabled until the job ends
    try {
      await watchJob(url, (data) => showJob(job, data));
    } catch (error) { show(error.message); }
    button.disabled = false;
  }

  backlog.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(backlog);
    button.disabled = true;
    try {
      const response = await fetch(backlog.dataset.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
        body: JSON.stringify({
          model_version: form.get("model_version") ? Number(form.get("model_version")) : null,
          limit: form.get("limit") ? Number(form.get("limit")) : null,
        }),
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.detail || Object.values(data).flat().join(" ") || `failed (${response.status})`);
      job.querySelector("a").textContent = `job #${data.id}`;
      showJob(job, data);
      follow(`${backlog.dataset.jobsUrl}${data.id}/`);
    } catch (error) {
      show(error.message);
      button.disabled = false;
    }
  });
})();
