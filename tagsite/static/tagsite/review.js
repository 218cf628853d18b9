// The one review script for every kind's screen: decisions go to POST /api/review/<kind>/decide/ and update
// the page in place (no reload); keyboard, per-item and per-card decisions, bulk on selected cards, select all.
//
// Markup: a container [data-review-kind][data-decide-url][data-can-review] holding cards [data-review-card]
// (optional checkbox .select), each with items [data-proposal][data-id][data-confidence] carrying a status
// class (pending/approved/rejected/auto_approved) and buttons [data-decision=approved|rejected].
// Optional: #review-status (messages), #threshold + [data-card=threshold] / [data-bulk=threshold] (approve
// at or above, reject the rest), [data-bulk=approved|rejected], #select-all.
// Keys: j/k card, y approve all pending, n reject all pending, a threshold, 1-9 flip an item, x select.
"use strict";

(function () {
  const root = document.querySelector("[data-review-kind]");
  if (!root || !root.dataset.canReview) return;
  const status = document.getElementById("review-status");
  const thresholdInput = document.getElementById("threshold");
  const STATES = ["pending", "approved", "rejected", "auto_approved"];
  const cards = () => Array.from(root.querySelectorAll("[data-review-card]"));
  const items = (card) => Array.from(card.querySelectorAll("[data-proposal]"));
  const pendingIn = (list) => list.flatMap((card) => items(card).filter((item) => item.classList.contains("pending")));
  let current = 0;

  const token = csrfToken;  // app.js

  function show(text, error) {
    if (!status) return;
    status.textContent = text;
    status.className = error ? "error" : "hint";
  }

  function mark(list, decision) {
    list.forEach((item) => { item.classList.remove(...STATES); item.classList.add(decision); });
    new Set(list.map((item) => item.closest("[data-review-card]"))).forEach((card) => {
      card.classList.toggle("done", !pendingIn([card]).length);
    });
  }

  async function decide(list, decision) {
    list = list.filter((item) => !item.classList.contains(decision));
    if (!list.length) return 0;
    const response = await fetch(root.dataset.decideUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
      body: JSON.stringify({ ids: list.map((item) => Number(item.dataset.id)), status: decision, via: "page" }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || Object.values(data).flat().join(" ") || `failed (${response.status})`);
    const settled = new Set([...data.changed, ...data.skipped]);  // skipped: already so (someone else decided)
    mark(list.filter((item) => settled.has(Number(item.dataset.id))), decision);
    return data.changed.length;
  }

  async function run(action) {
    try { show(await action()); } catch (error) { show(error.message, true); }
  }

  const decideAll = (list, decision) => run(async () => `${await decide(list, decision)} ${decision}`);

  function byThreshold(chosen) {
    const threshold = Number(thresholdInput ? thresholdInput.value : 0.5);
    const pending = pendingIn(chosen);
    return run(async () => {
      const approved = await decide(pending.filter((item) => Number(item.dataset.confidence) >= threshold), "approved");
      const rejected = await decide(pending.filter((item) => Number(item.dataset.confidence) < threshold), "rejected");
      return `${approved} approved, ${rejected} rejected`;
    });
  }

  const keyed = (card) => items(card).slice(0, 9);  // keys 1-9 flip these
  cards().forEach((card) => keyed(card).forEach((item, index) => {  // the key number beside the item it flips
    const key = document.createElement("kbd");
    key.className = "key";
    key.textContent = index + 1;
    key.title = `press ${index + 1} to approve or reject this`;
    item.prepend(key);
  }));
  const selectedCards = () => cards().filter((card) => { const box = card.querySelector(".select"); return box && box.checked; });

  function focus(index) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((card, i) => card.classList.toggle("current", i === current));
    all[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const card = button && button.closest("[data-review-card]");
    if (!card) return;
    focus(cards().indexOf(card));
    if (button.dataset.decision) {
      event.preventDefault();
      decideAll([button.closest("[data-proposal]")], button.dataset.decision);
    } else if (button.dataset.card === "threshold") byThreshold([card]);
  });

  document.querySelectorAll("[data-bulk]").forEach((button) => button.addEventListener("click", () => {
    const chosen = selectedCards();
    if (!chosen.length) { show("Select first (x, or the checkboxes).", true); return; }
    if (button.dataset.bulk === "threshold") byThreshold(chosen);
    else decideAll(pendingIn(chosen), button.dataset.bulk);
  }));

  const selectAll = document.getElementById("select-all");
  if (selectAll && selectAll.dataset.reviewSelect !== undefined) selectAll.addEventListener("change", () => {
    root.querySelectorAll("[data-review-card] .select").forEach((box) => { box.checked = selectAll.checked; });
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = cards()[current];
    if (!card) return;
    const key = event.key;
    if (key === "j") focus(current + 1);
    else if (key === "k") focus(current - 1);
    else if (key === "a") byThreshold([card]);
    else if (key === "y") decideAll(pendingIn([card]), "approved");
    else if (key === "n") decideAll(pendingIn([card]), "rejected");
    else if (key === "x") { const box = card.querySelector(".select"); if (box) box.checked = !box.checked; }
    else if (/^[1-9]$/.test(key)) {
      const item = keyed(card)[Number(key) - 1];
      if (item) decideAll([item], item.classList.contains("approved") ? "rejected" : "approved");
    } else return;
    event.preventDefault();
  });

  focus(0);
})();
