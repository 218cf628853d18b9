// Review queue: decisions go to the REST API and update the page in place. No framework, no CDN.
"use strict";

(function () {
  const root = document.getElementById("review");
  if (!root || !root.dataset.canReview) return;
  const status = document.getElementById("review-status");
  const thresholdInput = document.getElementById("threshold");
  const cards = () => Array.from(root.querySelectorAll(".review-card"));
  let current = 0;

  function token() {
    const match = document.cookie.match(/csrftoken=([^;]+)/);
    return match ? match[1] : "";
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
      body: JSON.stringify({ ...body, via: "page" }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || Object.values(data).flat().join(" ") || `failed (${response.status})`);
    return data;
  }

  function show(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "hint";
  }

  function mark(items, decision) {
    items.forEach((li) => { li.classList.remove("pending", "approved", "rejected"); li.classList.add(decision); });
    new Set(items.map((li) => li.closest(".review-card"))).forEach((card) => {
      card.classList.toggle("done", !card.querySelector(".suggestion.pending"));
    });
  }

  async function decide(items, decision) {
    items = items.filter((li) => !li.classList.contains(decision));
    if (!items.length) return;
    try {
      const data = await post(root.dataset.decideUrl, { ids: items.map((li) => Number(li.dataset.id)), status: decision });
      mark(items, decision);
      show(`${data[decision]} ${decision}`);
    } catch (error) { show(error.message, true); }
  }

  async function byThreshold(selected) {
    const threshold = Number(thresholdInput.value);
    if (!selected.length) return;
    try {
      const data = await post(root.dataset.reviewUrl, { images: selected.map((c) => Number(c.dataset.image)), threshold });
      selected.forEach((card) => {
        const pending = Array.from(card.querySelectorAll(".suggestion.pending"));
        mark(pending.filter((li) => Number(li.dataset.confidence) >= threshold), "approved");
        mark(pending.filter((li) => Number(li.dataset.confidence) < threshold), "rejected");
      });
      show(`${data.approved} approved, ${data.rejected} rejected`);
    } catch (error) { show(error.message, true); }
  }

  const pendingIn = (list) => list.flatMap((card) => Array.from(card.querySelectorAll(".suggestion.pending")));
  const keyed = (card) => Array.from(card.querySelectorAll(".suggestion")).slice(0, 9);  // keys 1-9 flip these

  cards().forEach((card) => keyed(card).forEach((li, index) => {  // the key number beside the tag it flips
    const key = document.createElement("kbd");
    key.className = "key";
    key.textContent = index + 1;
    key.title = `press ${index + 1} to approve or reject this tag`;
    li.prepend(key);
  }));
  const selectedCards = () => cards().filter((card) => card.querySelector(".select").checked);

  function focus(index) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((card, i) => card.classList.toggle("current", i === current));
    all[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const card = button.closest(".review-card");
    focus(cards().indexOf(card));
    if (button.dataset.decision) decide([button.closest(".suggestion")], button.dataset.decision);
    else if (button.dataset.card === "threshold") byThreshold([card]);
  });

  document.querySelectorAll("[data-bulk]").forEach((button) => button.addEventListener("click", () => {
    const chosen = selectedCards();
    if (!chosen.length) { show("Select images first (x, or the checkboxes).", true); return; }
    if (button.dataset.bulk === "threshold") byThreshold(chosen);
    else decide(pendingIn(chosen), button.dataset.bulk);
  }));

  document.getElementById("select-all").addEventListener("change", (event) => {
    root.querySelectorAll(".select").forEach((box) => { box.checked = event.target.checked; });
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = cards()[current];
    if (!card) return;
    const key = event.key;
    if (key === "j") focus(current + 1);
    else if (key === "k") focus(current - 1);
    else if (key === "a") byThreshold([card]);
    else if (key === "y") decide(pendingIn([card]), "approved");
    else if (key === "n") decide(pendingIn([card]), "rejected");
    else if (key === "x") { const box = card.querySelector(".select"); box.checked = !box.checked; }
    else if (/^[1-9]$/.test(key)) {
      const li = keyed(card)[Number(key) - 1];
      if (li) decide([li], li.classList.contains("approved") ? "rejected" : "approved");
    } else return;
    event.preventDefault();
  });

  const backlog = document.getElementById("backlog");
  const job = backlog.querySelector(".job");

  async function follow(url) {  // the form stays disabled until the job ends
    try {
      await watchJob(url, (data) => showJob(job, data));
    } catch (error) { show(error.message, true); }
    backlog.querySelector("button").disabled = false;
  }

  backlog.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(backlog);
    backlog.querySelector("button").disabled = true;
    try {
      const data = await post(backlog.dataset.url, {
        model_version: form.get("model_version") ? Number(form.get("model_version")) : null,
        limit: form.get("limit") ? Number(form.get("limit")) : null,
      });
      job.querySelector("a").textContent = `job #${data.id}`;
      showJob(job, data);
      follow(`${backlog.dataset.jobsUrl}${data.id}/`);
    } catch (error) {
      show(error.message, true);
      backlog.querySelector("button").disabled = false;
    }
  });

  focus(0);
})();
