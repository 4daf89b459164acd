// The Assist page: poll the listener's status and redraw its live log (time, contact, length).
"use strict";

(function () {
  const box = document.getElementById("listener");
  if (!box) return;
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  const time = (unix) => new Date(unix * 1000).toLocaleTimeString();

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function draw(status) {
    field("state").textContent = status.state;
    const set = (name, value) => { const el = field(name); if (el) el.textContent = value; };
    set("run", status.run_id || "…");
    set("drafts", status.drafts || 0);
    const error = field("error");
    error.textContent = status.error || "";
    error.hidden = !status.error;
    const body = field("log");
    body.replaceChildren();
    if (!status.log.length) {
      const row = document.createElement("tr");
      row.className = "muted";
      const td = cell("Nothing yet.");
      td.colSpan = 4;
      row.append(td);
      body.append(row);
    }
    for (const entry of status.log) {
      const row = document.createElement("tr");
      row.append(cell(time(entry.time_unix)), cell(entry.contact),
        cell(entry.length ? `${entry.length} chars` : "", "num"), cell(entry.outcome));
      body.append(row);
    }
  }

  for (const td of box.querySelectorAll("[data-unix]")) td.textContent = time(Number(td.dataset.unix));
  async function poll() {
    try {
      const response = await fetch(box.dataset.status, { headers: { Accept: "application/json" } });
      if (response.ok) draw(await response.json());
    } catch (_) { /* twin is restarting: try again */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
