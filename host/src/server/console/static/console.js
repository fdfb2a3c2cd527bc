// credpool console: keeps credential statuses and tickets' time left
// current. Same origin only (the Content-Security-Policy allows nothing
// else); no inline script anywhere.
"use strict";

const POLL_MS = 1000;

function statusCells() {
  return Array.from(document.querySelectorAll("[data-status-of]"));
}

async function pollStatuses() {
  const cells = statusCells();
  if (cells.length === 0) return true;
  const ids = Array.from(new Set(cells.map((c) => c.dataset.statusOf)));
  const query = ids.map(encodeURIComponent).join(",");
  let answer;
  try {
    answer = await fetch("/console/status?ids=" + query, {
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (_) {
    return true; // the server is away for a moment; try again
  }
  if (answer.status === 401) return false; // signed out: stop
  if (!answer.ok) return true;
  const statuses = await answer.json();
  for (const cell of cells) {
    const status = statuses[cell.dataset.statusOf];
    if (typeof status === "string" && cell.textContent !== status) {
      cell.textContent = status;
      cell.className = "status status-" + status;
    }
  }
  return true;
}

function tickDeadlines() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const ms = Number(el.dataset.deadline) - now;
    if (ms <= 0) {
      el.textContent = "closing";
      continue;
    }
    const s = Math.floor(ms / 1000);
    el.textContent = Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
  }
}

async function loop() {
  if (await pollStatuses()) setTimeout(loop, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  loop();
  tickDeadlines();
  setInterval(tickDeadlines, 1000);
});
