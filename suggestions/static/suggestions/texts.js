// The VLM texts' review screen: accept a title/caption/description as proposed or as edited in its box
// (POST /api/text-proposals/accept/), reject it or flip a keyword chip (POST /api/review/<kind>/decide/),
// "Apply metadata" queues a write of the image (POST /api/metadata/write/). Decisions update the page in place.
// Keys: j/k card, y accept all (as edited), n reject all, e edit the first text, 1-9 flip a keyword,
// m apply metadata, x select.
"use strict";

(function () {
  const root = document.getElementById("texts");
  if (!root) return;
  // A format the browser cannot show (TIFF, some RAW-ish files) falls back to the thumbnail.
  root.querySelectorAll("img[data-fallback]").forEach((img) => {
    const fallback = () => { if (img.getAttribute("src") !== img.dataset.fallback) img.src = img.dataset.fallback; };
    img.addEventListener("error", fallback, { once: true });
    if (img.complete && img.currentSrc && !img.naturalWidth) fallback();  // failed before this script ran
  });
  if (!root.dataset.canReview) return;
  const status = document.getElementById("review-status");
  const STATES = ["pending", "approved", "rejected", "auto_approved"];
  const cards = () => Array.from(root.querySelectorAll("[data-card]"));
  const texts = (card) => Array.from(card.querySelectorAll("[data-text]"));
  const chips = (card) => Array.from(card.querySelectorAll("[data-keyword]"));
  const pending = (list) => list.filter((item) => item.classList.contains("pending"));
  let current = 0;

  const token = csrfToken;  // app.js

  function show(text, error) {
    status.textContent = text;
    status.className = error ? "error" : "hint";
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || JSON.stringify(data) || `failed (${response.status})`);
    return data;
  }

  function mark(list, decision, data) {
    const settled = new Set([...data.changed, ...data.skipped]);
    list.filter((item) => settled.has(Number(item.dataset.id))).forEach((item) => {
      item.classList.remove(...STATES);
      item.classList.add(decision);
    });
    new Set(list.map((item) => item.closest("[data-card]"))).forEach((card) => {
      card.classList.toggle("done", !pending([...texts(card), ...chips(card)]).length);
    });
    const refused = Object.values(data.refused || {});
    return `${data.changed.length} ${decision}` + (refused.length ? ` (${refused.join("; ")})` : "");
  }

  async function decideTexts(list, decision) {
    if (!list.length) return "";
    if (decision === "approved") {
      const items = list.map((item) => ({ id: Number(item.dataset.id), text: item.querySelector("textarea").value }));
      return mark(list, decision, await post(root.dataset.acceptUrl, { items, via: "page" }));
    }
    const ids = list.map((item) => Number(item.dataset.id));
    return mark(list, decision, await post(root.dataset.textDecideUrl, { ids, status: decision, via: "page" }));
  }

  async function decideKeywords(list, decision) {
    if (!list.length) return "";
    const ids = list.map((item) => Number(item.dataset.id));
    return mark(list, decision, await post(root.dataset.keywordDecideUrl, { ids, status: decision, via: "page" }));
  }

  async function run(action) {
    try { show(await action() || "nothing to do"); } catch (error) { show(error.message, true); }
  }

  const decideCards = (chosen, decision) => run(async () => {
    const parts = [
      await decideTexts(chosen.flatMap((card) => pending(texts(card))), decision),
      await decideKeywords(chosen.flatMap((card) => pending(chips(card))), decision),
    ];
    return parts.filter(Boolean).join(", ");
  });

  const apply = (chosen) => run(async () => {
    if (!root.dataset.writeUrl) throw new Error("Writing files needs the tagsite.write_metadata permission.");
    const ids = chosen.map((card) => Number(card.dataset.image));
    const data = await post(root.dataset.writeUrl, { ids, mode: "append" });
    return `metadata write queued: job #${data.job} (${data.status})`;
  });

  cards().forEach((card) => chips(card).slice(0, 9).forEach((chip, index) => {
    const key = document.createElement("kbd");
    key.className = "key";
    key.textContent = index + 1;
    chip.prepend(key);
  }));

  function focus(index) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((card, i) => card.classList.toggle("current", i === current));
    all[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const card = button && button.closest("[data-card]");
    if (!card) return;
    focus(cards().indexOf(card));
    const text = button.closest("[data-text]");
    const chip = button.closest("[data-keyword]");
    if (text) run(() => decideTexts([text], button.dataset.decision));
    else if (chip) run(() => decideKeywords([chip], button.dataset.decision));
    else if (button.dataset.cardAction === "apply") apply([card]);
    else if (button.dataset.cardAction) decideCards([card], button.dataset.cardAction);
  });

  const selected = () => cards().filter((card) => { const box = card.querySelector(".select"); return box && box.checked; });
  document.querySelectorAll("[data-bulk]").forEach((button) => button.addEventListener("click", () => {
    const chosen = selected();
    if (!chosen.length) { show("Select first (x, or the checkboxes).", true); return; }
    if (button.dataset.bulk === "apply") apply(chosen);
    else decideCards(chosen, button.dataset.bulk);
  }));
  const selectAll = document.getElementById("select-all");
  if (selectAll) selectAll.addEventListener("change", () => {
    root.querySelectorAll("[data-card] .select").forEach((box) => { box.checked = selectAll.checked; });
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target.closest("textarea")) { event.target.blur(); return; }
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = cards()[current];
    if (!card) return;
    const key = event.key;
    if (key === "j") focus(current + 1);
    else if (key === "k") focus(current - 1);
    else if (key === "y") decideCards([card], "approved");
    else if (key === "n") decideCards([card], "rejected");
    else if (key === "m") apply([card]);
    else if (key === "e") { const box = card.querySelector("[data-text] textarea"); if (box) box.focus(); }
    else if (key === "x") { const box = card.querySelector(".select"); if (box) box.checked = !box.checked; }
    else if (/^[1-9]$/.test(key)) {
      const chip = chips(card)[Number(key) - 1];
      if (chip) run(() => decideKeywords([chip], chip.classList.contains("approved") ? "rejected" : "approved"));
    } else return;
    event.preventDefault();
  });

  focus(0);
})();
