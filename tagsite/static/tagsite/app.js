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

function showJob(element, job) {  // a job's status, progress bar, numbers and message, in place
  element.hidden = false;
  element.querySelector(".status").textContent = job.status;
  element.querySelector(".status").className = `status ${job.status}`;
  element.querySelector("progress").max = job.total || 1;
  element.querySelector("progress").value = job.current;
  element.querySelector(".numbers").textContent = `${job.current}/${job.total ?? "?"}`;
  element.querySelector(".message").textContent = job.message;
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
      cells.forEach((value, i) => { const td = document.createElement("td"); td.textContent = value; tr.appendChild(td); });
      tr.children[2].className = `status ${job.status}`;
      tr.children[3].innerHTML = `<progress max="${job.total || 1}" value="${job.current}"></progress> <span class="numbers">${job.current}/${job.total ?? "?"}</span>`;
      tr.children[4].className = "message";
      body.appendChild(tr);
    }
  }
  setInterval(refresh, 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-autocomplete]").forEach(setupAutocomplete);
  const zone = document.getElementById("dropzone");
  if (zone) setupUpload(zone);
  const jobs = document.getElementById("jobs");
  if (jobs) setupJobs(jobs);
});
