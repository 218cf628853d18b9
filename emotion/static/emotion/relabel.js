// Changing a face's label on the emotion screen: POST /api/emotions/relabel/ with approve, then the face shows
// the new label as approved (the decisions themselves are tagsite/review.js's).
"use strict";

(function () {
  const root = document.querySelector("[data-relabel-url]");
  if (!root || !root.dataset.canReview) return;
  const status = document.getElementById("review-status");
  const token = csrfToken;  // app.js

  root.addEventListener("change", async (event) => {
    const select = event.target.closest("select.relabel");
    if (!select || !select.value) return;
    const item = select.closest("[data-proposal]");
    const label = select.value;
    const response = await fetch(root.dataset.relabelUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
      body: JSON.stringify({ ids: [Number(item.dataset.id)], label, approve: true, via: "page" }),
    });
    const data = await response.json().catch(() => ({}));
    select.value = "";
    if (!response.ok || !data.relabelled) {
      status.textContent = data.detail || (response.ok ? "Only pending faces can be relabelled." : `failed (${response.status})`);
      status.className = "error";
      return;
    }
    item.querySelector(".label").textContent = label;
    // the confidence is the model's, for its own label: say so once the label is a person's
    const confidence = Number(item.dataset.confidence).toFixed(2);
    item.querySelector(".conf").textContent =
      label === item.dataset.proposed ? confidence : `model: ${item.dataset.proposed} ${confidence}`;
    item.classList.remove("pending", "rejected");
    item.classList.add("approved");
    status.textContent = `relabelled ${label} and approved`;
    status.className = "hint";
  });
})();
