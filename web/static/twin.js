// twin: the little JavaScript the pages need (no inline scripts: the CSP forbids them).
"use strict";

const seconds = (s) => s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

const SVG = "http://www.w3.org/2000/svg";

// A round step for axis ticks: 1, 2 or 5 times a power of ten, about `count` ticks over `span`.
function tickStep(span, count) {
  const raw = span / count || 1, power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

// The loss chart: axes with step numbers and loss values, the training series as a line and
// the validation series as a dashed line with dots.
function drawCurve(svg) {
  const data = svg._points || {};
  const train = data.train || [], val = data.val || [];
  svg.replaceChildren();
  const all = train.concat(val);
  const W = 640, H = 240, L = 52, R = 12, T = 10, B = 34;
  if (!all.length) {
    const note = document.createElementNS(SVG, "text");
    Object.entries({ x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }).forEach(([k, v]) => note.setAttribute(k, v));
    note.textContent = "The loss curve appears after the first training step.";
    svg.appendChild(note);
    return;
  }
  const steps = all.map((p) => p[0]), losses = all.map((p) => p[1]);
  const x0 = Math.min(0, ...steps), x1 = Math.max(...steps, 1);
  let y0 = Math.min(...losses), y1 = Math.max(...losses);
  if (y1 - y0 < 1e-6) { y0 -= 0.5; y1 += 0.5; }
  // The loss axis runs from tick to tick, so that it always has a value at both ends.
  const ys = tickStep(y1 - y0, 4);
  y0 = Math.floor(y0 / ys + 1e-9) * ys;
  y1 = Math.max(Math.ceil(y1 / ys - 1e-9) * ys, y0 + ys);
  const digits = Math.max(0, -Math.floor(Math.log10(ys) + 1e-9));
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const add = (name, attrs, text) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text != null) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  const xs = Math.max(1, tickStep(x1 - x0, 6));  // steps are whole numbers
  for (let x = Math.ceil(x0 / xs) * xs; x <= x1; x += xs) {
    add("line", { x1: sx(x), y1: H - B, x2: sx(x), y2: H - B + 4, class: "axis" });
    add("text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", class: "tick" }, String(x));
  }
  add("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle", class: "tick" }, "step");
  for (let i = 0; y0 + i * ys <= y1 + ys / 2; i += 1) {
    const y = y0 + i * ys;
    add("line", { x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: "grid" });
    add("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, y.toFixed(digits));
  }
  const path = (points) => points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
  if (train.length > 1) add("polyline", { points: path(train), class: "series-train" });
  else if (train.length) add("circle", { cx: sx(train[0][0]), cy: sy(train[0][1]), r: 3, class: "dot-train" });
  if (val.length > 1) add("polyline", { points: path(val), class: "series-val" });
  val.forEach(([x, y]) => add("circle", { cx: sx(x), cy: sy(y), r: 3, class: "dot-val" }));
  const caption = svg.parentElement.querySelector('[data-field="curve-caption"]');
  if (caption && train.length) {
    const last = (s) => s[s.length - 1];
    let text = `training loss ${train[0][1].toFixed(3)} → ${last(train)[1].toFixed(3)} over ${last(train)[0]} steps`;
    if (val.length > 1) text += ` · validation loss ${val[0][1].toFixed(3)} → ${last(val)[1].toFixed(3)}`;
    else if (val.length) text += ` · validation loss ${val[0][1].toFixed(3)} at step ${val[0][0]}`;
    caption.textContent = text;
  }
}

// Re-read the curve from the run's log (the same data the finished run's chart shows).
async function refreshCurve(svg) {
  if (!svg.dataset.source || svg._loading) return;
  svg._loading = true;
  try {
    const response = await fetch(svg.dataset.source, { headers: { Accept: "application/json" } });
    if (response.ok) { svg._points = await response.json(); drawCurve(svg); }
  } finally { svg._loading = false; }
}

function renderStages(list, stages) {
  list.hidden = !stages.length;
  list.replaceChildren(...stages.map((s) => {
    const li = document.createElement("li");
    li.className = `stage stage-${s.state}`;
    const label = document.createElement("span");
    label.className = "stage-label";
    label.textContent = s.label;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = s.state;
    li.append(label, " · ", state);
    if (s.text) li.append(` · ${s.text}`);
    if (s.note) {
      const note = document.createElement("span");
      note.className = "muted";
      note.textContent = s.note;
      li.append(document.createElement("br"), note);
    }
    return li;
  }));
}

// Live job progress from the server's event stream. The stream reconnects when the server
// restarts; once the job has ended the page is reloaded, so it shows the server's final view.
function followJob(box) {
  if (box.dataset.finished === "yes") return;
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  let lastStep = null;
  const connect = () => {
    const source = new EventSource(box.dataset.jobEvents);
    source.onopen = () => { field("connection").hidden = true; };
    source.onmessage = (event) => {
      const job = JSON.parse(event.data);
      field("state").textContent = job.stopping ? "stopping…" : job.state;
      field("state").className = `state state-${job.state}`;
      const bar = field("bar");
      if (job.fraction !== null) bar.value = job.fraction; else bar.removeAttribute("value");
      field("detail").textContent = job.detail;
      renderStages(field("stages"), job.stages);
      const cancel = field("cancel");
      if (cancel && job.stopping) {
        const button = cancel.querySelector("button");
        button.disabled = true;
        button.textContent = "Stopping…";
      }
      const curve = box.querySelector('[data-field="curve"]');
      const step = (job.progress.train || job.progress).step;
      if (curve && step != null && step !== lastStep) { lastStep = step; refreshCurve(curve); }
      if (job.finished) { source.close(); window.location.reload(); }
    };
    source.onerror = () => {
      // The server went away (a restart): keep trying; once it answers, reconnect, or reload
      // when it no longer answers the stream (e.g. a login is needed first).
      field("connection").hidden = false;
      source.close();
      setTimeout(async () => {
        try {
          const page = box.dataset.jobEvents.replace(/\/events$/, "");
          const probe = await fetch(page, { redirect: "manual" });
          if (probe.ok) connect(); else window.location.reload();
        } catch (_) { source.onerror(); }
      }, 1500);
    };
  };
  connect();
  box.querySelectorAll('form[data-field="cancel"]').forEach((form) => {
    form.addEventListener("submit", () => {
      const button = form.querySelector("button");
      field("state").textContent = "stopping…";
      setTimeout(() => { button.disabled = true; button.textContent = "Stopping…"; });
    });
  });
}

// A wait Telegram asked for, counting down to the time it ends.
function countDown(el) {
  const until = Number(el.dataset.countdown);
  const tick = () => {
    const left = until - Date.now() / 1000;
    el.textContent = left > 0 ? `can be fetched in ${seconds(left)}` : "can be fetched now";
    if (left > 0) setTimeout(tick, 1000);
  };
  tick();
}

// Upload a file as the raw request body, with a progress bar, then open the job's page.
function setupUpload(form) {
  const bar = form.querySelector('[data-field="upload"]');
  const error = form.querySelector('[data-field="error"]');
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.querySelector('input[type="file"]').files[0];
    if (!file) return;
    const button = form.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    bar.hidden = false;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.upload);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201 && body.url) { window.location.assign(body.url); return; }
      error.textContent = [body.detail || `Upload failed (${xhr.status}).`, body.hint]
        .filter(Boolean).join("\n→ ");
      error.hidden = false;
      bar.hidden = true;
      button.disabled = false;
    };
    xhr.onerror = () => {
      error.textContent = "The upload was interrupted. Is twin still running?";
      error.hidden = false;
      button.disabled = false;
    };
    xhr.send(file);
  });
}

// Read a streamed SSE response (fetch over POST), calling onEvent(name, data) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const raw of events) {
      const name = (raw.match(/^event: (.*)$/m) || [])[1] || "message";
      onEvent(name, JSON.parse((raw.match(/^data: (.*)$/m) || [])[1] || "{}"));
    }
  }
}

// A new conversation joins the list beside the chat at once (the server lists it from now on).
function listConversation(id, title, peer) {
  const nav = document.querySelector(".conversations");
  if (!nav) return;
  let list = nav.querySelector("ul");
  if (!list) {
    nav.querySelectorAll("p.muted").forEach((p) => p.remove());
    list = document.createElement("ul");
    nav.appendChild(list);
  }
  list.querySelectorAll('a[aria-current="page"]').forEach((a) => a.removeAttribute("aria-current"));
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.href = `/chat/${id}`;
  link.textContent = title || "(empty)";
  link.setAttribute("aria-current", "page");
  const who = document.createElement("span");
  who.className = "muted";
  who.textContent = `as ${peer}`;
  li.append(link, " ", who);
  list.prepend(li);
}

// Chat: the conversation is kept on the server; the page sends the new message (or asks for
// the last reply again) and each reply streams back as SSE over a POST (EventSource can only
// GET, and private text must not travel in a URL).
function setupChat(box) {
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  const list = field("messages");
  const error = field("error");
  const compose = field("compose");
  const regenerate = field("regenerate");
  const bubble = (text, mine) => {
    const li = document.createElement("li");
    li.className = mine ? "mine" : "theirs";
    li.textContent = text;
    list.appendChild(li);
    return li;
  };
  const busy = (on) => compose.querySelectorAll("button").forEach((b) => { b.disabled = on; });

  async function ask(payload, undo) {
    const setup = field("setup").elements;
    error.hidden = true;
    const reply = bubble("", true);
    reply.classList.add("pending");
    reply.dataset.pieces = "0";
    busy(true);
    try {
      const response = await fetch(box.dataset.chat, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({
          ...payload,
          conversation_id: box.dataset.conversation || null,
          peer: setup.peer.value.trim() || "Friend",
          temperature: Number(setup.temperature.value || setup.temperature.defaultValue),
          top_k: Number(setup.top_k.value || 0),
        }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const detail = Array.isArray(body.detail) ? "Check the chat settings." : body.detail;
        throw new Error([detail || `The twin could not answer (${response.status}).`, body.hint].filter(Boolean).join("\n→ "));
      }
      await readEvents(response, (name, data) => {
        if (name === "conversation" && box.dataset.conversation !== data.id) {
          box.dataset.conversation = data.id;
          window.history.replaceState(null, "", `/chat/${data.id}`);
          listConversation(data.id, payload.text || "", setup.peer.value.trim() || "Friend");
        }
        if (name === "message") {
          reply.textContent += data.text;
          reply.dataset.pieces = String(Number(reply.dataset.pieces) + 1);
        }
        if (name === "failure") throw new Error(data.detail);
      });
      if (!reply.textContent.trim()) reply.textContent = "(no reply)";
      regenerate.hidden = false;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      reply.remove();
      undo();
    } finally {
      reply.classList.remove("pending");
      busy(false);
      compose.elements.text.focus();
    }
  }

  compose.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = compose.elements.text;
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const mine = bubble(text, false);
    ask({ text }, () => mine.remove());
  });
  regenerate.addEventListener("click", () => {
    const last = list.lastElementChild;
    let removed = null;
    if (last && last.classList.contains("mine")) { removed = last; last.remove(); }
    ask({ regenerate: true }, () => { if (removed) list.appendChild(removed); });
  });
}

// QR login: the server sends a fresh code when the old one expires, then where to go.
function followQr(box) {
  const source = new EventSource(box.dataset.qrEvents);
  source.onmessage = (event) => { box.innerHTML = JSON.parse(event.data).svg; };
  source.addEventListener("next", (event) => {
    source.close();
    window.location.assign(JSON.parse(event.data).url);
  });
  source.addEventListener("failure", (event) => {
    source.close();
    const error = box.parentElement.querySelector('[data-field="error"]');
    error.textContent = JSON.parse(event.data).detail;
    error.hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('[data-field="curve"]').forEach((svg) => {
    svg._points = JSON.parse(svg.dataset.points || "{}");
    drawCurve(svg);
  });
  document.querySelectorAll("[data-countdown]").forEach(countDown);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  });
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; }
      catch (_) { window.getSelection().selectAllChildren(document.getElementById(button.dataset.copy)); button.textContent = "Selected: press Ctrl+C"; }
    });
  });
  document.querySelectorAll("[data-job-events]").forEach(followJob);
  document.querySelectorAll("form[data-upload]").forEach(setupUpload);
  document.querySelectorAll("[data-chat]").forEach(setupChat);
  document.querySelectorAll("[data-qr-events]").forEach(followQr);
});
