// tagsite pages: tag autocomplete, drag-and-drop upload, live job progress. No framework, no CDN.
"use strict";

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/csrftoken=([^;]+)/);
  return match ? match[1] : "";
}

// The text an autocomplete completes, as candidates tried in order, each {start, prefix, text}: a tag field
// (`data-single`) is one name however many words; in a search, an open quoted name (`"tabby c`), else the last
// two words (`tabby c`, a name typed with spaces), else the word at the cursor. The server normalises the text
// like a tag name, so `Tabby C` finds tabby_cat.
function completionTerms(input) {
  const before = input.value.slice(0, input.selectionStart);
  if ("single" in input.dataset) return before.trim() ? [{ start: 0, prefix: "", text: before }] : [];
  if ((before.match(/"/g) || []).length % 2 === 1) {
    const quote = before.lastIndexOf('"');
    const start = quote > 0 && "-~".includes(before[quote - 1]) ? quote - 1 : quote;
    return [{ start, prefix: before.slice(start, quote), text: before.slice(quote + 1) }];
  }
  const terms = [];
  const pair = before.match(/(?:^|\s)([-~]?)([^\s"]+\s+[^\s"]+)$/);
  if (pair) terms.push({ start: before.length - pair[1].length - pair[2].length, prefix: pair[1], text: pair[2] });
  const word = before.match(/([-~]?)([^\s"]+)$/);
  if (word) terms.push({ start: word.index, prefix: word[1], text: word[2] });
  return terms.filter((term) => term.text.trim());
}

function setupAutocomplete(input) {
  const list = input.parentElement.querySelector(".suggestions");
  const single = "single" in input.dataset;
  let items = [], active = -1, timer = null, term = null, asked = 0, guessed = false;
  function render() {
    list.innerHTML = "";
    if (guessed && items.length) {  // no name starts with the text: tags whose names mean it (embeddings)
      const hint = document.createElement("li");
      hint.className = "did-you-mean";
      hint.textContent = "did you mean";
      list.appendChild(hint);
    }
    items.forEach((tag, i) => {
      const li = document.createElement("li");
      li.className = i === active ? "active" : "";
      li.innerHTML = `<span></span><span class="n">${tag.usage_count}</span>`;
      li.firstChild.textContent = tag.name;
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
      list.appendChild(li);
    });
    list.hidden = items.length === 0;
  }
  function close() { clearTimeout(timer); asked++; items = []; active = -1; render(); }  // answers still on the way are dropped
  function choose(i) {
    const after = input.value.slice(input.selectionStart);
    input.value = single ? items[i].name : input.value.slice(0, term.start) + term.prefix + items[i].name + " " + after.trimStart();
    close(); input.focus();
  }
  async function lookup(text, url = input.dataset.autocomplete) {
    const response = await fetch(`${url}?q=${encodeURIComponent(text)}`, { headers: { Accept: "application/json" } });
    return response.ok ? response.json() : [];
  }
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const terms = completionTerms(input);
    if (!terms.length) { close(); return; }
    const question = ++asked;
    timer = setTimeout(async () => {
      for (const candidate of terms) {
        const found = await lookup(candidate.text);
        if (question !== asked) return;
        if (found.length || candidate === terms[terms.length - 1]) { items = found; term = candidate; break; }
      }
      guessed = !items.length && "didYouMean" in input.dataset;
      if (guessed) {
        const near = await lookup(term.text, input.dataset.didYouMean);
        if (question !== asked) return;
        items = near;
      }
      active = -1; render();
    }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown") { active = Math.min(active + 1, items.length - 1); render(); e.preventDefault(); }
    else if (e.key === "ArrowUp") { active = Math.max(active - 1, 0); render(); e.preventDefault(); }
    else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { choose(active); e.preventDefault(); }
    else if (e.key === "Escape") close();
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
  if (input.form) input.form.addEventListener("submit", close);
}

async function postJSON(url, body) {  // a JSON POST to the API; a refusal throws its message for a person
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || Object.values(data).flat().join(" ") || `failed (${response.status})`);
  return data;
}

async function reloadPart(selector) {  // re-render one part of this page from the server, in place
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector(selector);
  if (fresh) document.querySelector(selector).replaceWith(fresh);
}

function setupTagEditor(section) {  // the image page: add a tag (autocomplete), remove one with its ×
  const status = section.querySelector(".tag-status");
  const form = section.querySelector("#tag-editor");
  async function change(url, name, done) {
    try {
      await postJSON(url, { tags: [name] });
      await reloadPart("#image-tags");
      status.textContent = done;
      status.className = "tag-status hint";
    } catch (error) {
      status.textContent = error.message;
      status.className = "tag-status error";
    }
  }
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = form.querySelector("input[name=tag]");
    const name = input.value.trim();
    if (!name) return;
    await change(section.dataset.tagUrl, name, `Tagged ${name}.`);
    if (status.classList.contains("hint")) input.value = "";
  });
  section.addEventListener("click", (event) => {
    const button = event.target.closest("button.untag");
    if (button) change(section.dataset.untagUrl, button.dataset.tag, `Removed ${button.dataset.tag}.`);
  });
}

function setupBulkTags(form) {  // the library: select images, then add or remove one tag on all of them
  const grid = () => document.getElementById("library-grid");
  const status = form.querySelector(".tag-status");
  const boxes = () => Array.from(grid().querySelectorAll(".tile .select"));
  const chosen = () => boxes().filter((box) => box.checked).map((box) => Number(box.closest(".tile").dataset.image));
  function count() {
    const n = chosen().length;
    form.querySelector(".selected-count").textContent = n ? `${n} selected` : "none selected";
  }
  document.getElementById("select-page").addEventListener("change", (event) => {
    boxes().forEach((box) => { box.checked = event.target.checked; });
    count();
  });
  document.addEventListener("change", (event) => { if (event.target.matches(".tile .select")) count(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const images = chosen();
    const name = form.querySelector("input[name=tag]").value.trim();
    const remove = (event.submitter || form.querySelector("button[type=submit]")).value === "remove";
    if (!images.length) { status.textContent = "Select images first (their checkboxes, or select all)."; status.className = "tag-status error"; return; }
    if (event.submitter && event.submitter.value === "write") {  // one write job for the selection: off to its page
      try { window.location = (await postJSON(form.dataset.writeUrl, { ids: images })).url; } catch (error) { status.textContent = error.message; status.className = "tag-status error"; }
      return;
    }
    try {
      const data = await postJSON(remove ? form.dataset.untagUrl : form.dataset.tagUrl, { images, tags: [name] });
      await reloadPart("#library-grid");
      boxes().forEach((box) => { box.checked = images.includes(Number(box.closest(".tile").dataset.image)); });
      status.textContent = remove
        ? `Removed ${name} from ${data.images} image(s) (${data.removed} tag(s) taken off).`
        : `Added ${data.tags.join(", ")} to ${data.images} image(s).`;
      status.className = "tag-status hint";
    } catch (error) {
      status.textContent = error.message;
      status.className = "tag-status error";
    }
  });
}

function setupUpload(zone) {
  const results = document.getElementById("upload-results");
  const input = document.getElementById("file-input");
  async function send(file) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span> <span class="state muted">uploading…</span>`;
    li.querySelector(".name").textContent = file.name;
    results.prepend(li);
    const state = li.querySelector(".state");
    if (file.size > Number(zone.dataset.maxBytes)) { state.textContent = "too large"; state.className = "state error"; return; }
    const body = new FormData();
    body.append("file", file);
    const response = await fetch(zone.dataset.uploadUrl, { method: "POST", body, headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" } });
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      const img = document.createElement("img");
      if (data.thumbnail_url) { img.src = data.thumbnail_url; img.alt = file.name; li.prepend(img); }
      state.innerHTML = `<a class="ok" href="/images/${data.id}/">${response.status === 201 ? "added" : "already in the library"} (#${data.id})</a>`;
      state.className = "state";
    } else {
      state.textContent = (data.file && data.file.join(" ")) || data.detail || `failed (${response.status})`;
      state.className = "state error";
    }
  }
  const sendAll = (files) => Array.from(files).reduce((p, f) => p.then(() => send(f)), Promise.resolve());
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); sendAll(e.dataTransfer.files); });
  input.addEventListener("change", () => sendAll(input.files));
}

// A job's status, progress bar, numbers and message (with what to do, when items failed), in place;
// an `a.job-link` inside the element leads to the job's page.
function showJob(element, job) {
  element.hidden = false;
  const status = element.querySelector(".status");
  status.textContent = job.status;
  status.className = `status ${job.status}${status.classList.contains("badge") ? " badge" : ""}`;
  element.querySelector("progress").max = job.total || 1;
  element.querySelector("progress").value = job.current;
  element.querySelector(".numbers").textContent = `${job.current}/${job.total ?? "?"}`;
  const advice = job.advice && !element.querySelector("#advice") ? ` ${job.advice}` : "";
  element.querySelector(".message").textContent = job.message + advice;
  const link = element.querySelector("a.job-link");
  if (link) link.href = job.url;
}

// The one job poller of every page: reports each state to onUpdate, one request at a time, and
// resolves with the final state once the job has ended.
async function watchJob(url, onUpdate, interval = 1000) {
  for (;;) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.ok) {
      const job = await response.json();
      onUpdate(job);
      if (!["queued", "running"].includes(job.status)) return job;
    } else if (response.status < 500) {
      throw new Error(`job: ${response.status}`);  // gone or forbidden: polling cannot help; a 5xx may pass
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

function setupJobs(table) {
  async function refresh() {
    const response = await fetch(table.dataset.api, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    const body = table.querySelector("tbody");
    body.innerHTML = "";
    for (const job of data.results) {
      const tr = document.createElement("tr");
      tr.dataset.job = job.id;
      const started = job.started_at ? new Date(job.started_at).toLocaleString() : "";
      const cells = [job.id, job.kind, job.status, "", job.message, job.error_count, started];
      cells.forEach((value) => { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); });
      for (const td of [tr.children[0], tr.children[1]]) {
        const a = document.createElement("a");
        a.href = job.url;
        a.textContent = td.textContent;
        td.replaceChildren(a);
      }
      const badge = document.createElement("span");
      badge.className = `status badge ${job.status}`;
      badge.textContent = job.status;
      tr.children[2].replaceChildren(badge);
      tr.children[3].innerHTML = `<progress max="${job.total || 1}" value="${job.current}"></progress> <span class="numbers">${job.current}/${job.total ?? "?"}</span>`;
      tr.children[4].className = "message";
      tr.children[5].className = "errors";
      body.appendChild(tr);
    }
  }
  setInterval(refresh, 1500);
}

// A tag's similar tags (embedding neighbours, /api/tags/<id>/similar/), fetched when its "similar" is first opened;
// the enclosing element holds the URL once (tag 0), not each of a page's hundreds of tags.
function setupSimilar(details) {
  details.addEventListener("toggle", async () => {
    const list = details.querySelector(".similar-list");
    if (!details.open || list.dataset.loaded) return;
    list.dataset.loaded = "1";
    list.textContent = "…";
    const url = details.closest("[data-similar-url]").dataset.similarUrl.replace("/0/", `/${details.dataset.tag}/`);
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const rows = response.ok ? await response.json() : [];
    list.textContent = rows.map((row) => `${row.name} (${row.similarity.toFixed(2)})`).join(", ") || "none yet";
  });
}

// A job's page follows the job while it is open and shows its final errors and advice once it has ended.
function setupJobDetail(section) {
  if (!section.hasAttribute("data-open")) return;
  watchJob(section.dataset.api, (job) => showJob(section, job)).then(() => window.location.reload(), () => {});
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-autocomplete]").forEach(setupAutocomplete);
  document.querySelectorAll("details.similar[data-tag]").forEach(setupSimilar);
  const tagging = document.getElementById("tagging");
  if (tagging) setupTagEditor(tagging);
  const bulkTags = document.getElementById("bulk-tags");
  if (bulkTags) setupBulkTags(bulkTags);
  const zone = document.getElementById("dropzone");
  if (zone) setupUpload(zone);
  const jobs = document.getElementById("jobs");
  if (jobs) setupJobs(jobs);
  const jobDetail = document.getElementById("job-detail");
  if (jobDetail) setupJobDetail(jobDetail);
});
