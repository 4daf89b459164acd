// twin: the little JavaScript the pages need (no inline scripts: the CSP forbids them).
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

const seconds = (s) => s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`;

// One line about a job's progress: counts, and for training the loss, speed and ETA.
function describe(p) {
  if (p.step != null && p.max_steps) {
    const parts = [`step ${p.step} of ${p.max_steps}`];
    if (p.train_loss != null) parts.push(`loss ${p.train_loss.toFixed(3)}`);
    if (p.val_loss != null) parts.push(`val ${p.val_loss.toFixed(3)}`);
    if (p.tokens_per_second) parts.push(`${Math.round(p.tokens_per_second).toLocaleString()} tokens/s`);
    if (p.eta_seconds != null) parts.push(`about ${seconds(p.eta_seconds)} left`);
    return parts.join(" · ");
  }
  return p.total ? `${p.done.toLocaleString()} of ${p.total.toLocaleString()} ${p.unit || ""}` : "";
}

// The loss curve: an SVG polyline scaled to the points seen so far.
function drawCurve(svg) {
  const points = svg._points;
  const line = svg.querySelector("polyline");
  if (points.length < 2) { line.setAttribute("points", ""); return; }
  const steps = points.map((p) => p[0]), losses = points.map((p) => p[1]);
  const x0 = Math.min(...steps), x1 = Math.max(...steps);
  const y0 = Math.min(...losses), y1 = Math.max(...losses);
  const sx = (x) => ((x - x0) / (x1 - x0 || 1)) * 600;
  const sy = (y) => 190 - ((y - y0) / (y1 - y0 || 1)) * 180;
  line.setAttribute("points", points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
  const caption = svg.parentElement.querySelector('[data-field="curve-caption"]');
  if (caption) caption.textContent = `training loss: ${losses[0].toFixed(3)} → ${losses[losses.length - 1].toFixed(3)} over ${x1} steps`;
}

function addPoint(svg, step, loss) {
  const points = svg._points;
  if (points.length && points[points.length - 1][0] >= step) return;
  points.push([step, loss]);
  drawCurve(svg);
}

// Live job progress from the server's event stream.
function followJob(box) {
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  const source = new EventSource(box.dataset.jobEvents);
  source.onmessage = (event) => {
    const job = JSON.parse(event.data);
    field("state").textContent = job.state;
    field("state").className = `state state-${job.state}`;
    const bar = field("bar");
    if (job.fraction !== null) bar.value = job.fraction; else bar.removeAttribute("value");
    const p = job.progress || {};
    field("detail").textContent = describe(p);
    const curve = box.querySelector('[data-field="curve"]');
    if (curve && p.train_loss != null) addPoint(curve, p.step, p.train_loss);
    if (job.error) { field("error").textContent = job.error; field("error").hidden = false; }
    if (job.finished) {
      source.close();
      if (job.state === "done") { bar.value = 1; field("next").hidden = false; }
      const cancel = field("cancel");
      if (cancel) cancel.hidden = true;
    }
  };
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) return; };
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
          temperature: Number(setup.temperature.value || 0.8),
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
    svg._points = JSON.parse(svg.dataset.points || "[]");
    drawCurve(svg);
  });
  document.querySelectorAll("[data-job-events]").forEach(followJob);
  document.querySelectorAll("form[data-upload]").forEach(setupUpload);
  document.querySelectorAll("[data-chat]").forEach(setupChat);
  document.querySelectorAll("[data-qr-events]").forEach(followQr);
});
