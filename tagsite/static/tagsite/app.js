// tagsite pages: tag autocomplete, drag-and-drop upload, live job progress. No framework, no CDN.
"use strict";

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/csrftoken=([^;]+)/);
  return match ? match[1] : "";
}

function setupAutocomplete(input) {
  const list = input.parentElement.querySelector(".suggestions");
  let items = [], active = -1, timer = null;
  const currentWord = () => input.value.slice(0, input.selectionStart).split(/\s+/).pop();
  function render() {
    list.innerHTML = "";
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
  function choose(i) {
    const word = currentWord();
    const prefix = (word.match(/^[-~]/) || [""])[0];
    const before = input.value.slice(0, input.selectionStart - word.length);
    const after = input.value.slice(input.selectionStart);
    input.value = before + prefix + items[i].name + " " + after.trimStart();
    items = []; active = -1; render(); input.focus();
  }
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const word = currentWord().replace(/^[-~]/, "");
    if (word.length < 1) { items = []; render(); return; }
    timer = setTimeout(async () => {
      const response = await fetch(`${input.dataset.autocomplete}?q=${encodeURIComponent(word)}`, { headers: { Accept: "application/json" } });
      if (response.ok) { items = await response.json(); active = -1; render(); }
    }, 120);
  });
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown") { active = Math.min(active + 1, items.length - 1); render(); e.preventDefault(); }
    else if (e.key === "ArrowUp") { active = Math.max(active - 1, 0); render(); e.preventDefault(); }
    else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { choose(active); e.preventDefault(); }
    else if (e.key === "Escape") { items = []; render(); }
  });
  input.addEventListener("blur", () => setTimeout(() => { items = []; render(); }, 100));
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

// A job's page follows the job while it is open and shows its final errors and advice once it has ended.
function setupJobDetail(section) {
  if (!section.hasAttribute("data-open")) return;
  watchJob(section.dataset.api, (job) => showJob(section, job)).then(() => window.location.reload(), () => {});
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-autocomplete]").forEach(setupAutocomplete);
  const zone = document.getElementById("dropzone");
  if (zone) setupUpload(zone);
  const jobs = document.getElementById("jobs");
  if (jobs) setupJobs(jobs);
  const jobDetail = document.getElementById("job-detail");
  if (jobDetail) setupJobDetail(jobDetail);
});
