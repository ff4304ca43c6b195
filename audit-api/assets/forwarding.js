// The forwarding status line: one short sentence per sink under the result count, from
// GET forwarding. Self-contained (the page's main script knows nothing of it); hidden when
// no sink is configured or the route is unavailable. Refreshed every 15 seconds.
const REFRESH_MS = 15000;

function describe(sink) {
  const behind = sink.lag_events === 1 ? "1 event" : `${sink.lag_events.toLocaleString()} events`;
  const seconds = Math.round(sink.lag_seconds);
  switch (sink.state) {
    case "halted":
      return `${sink.sink}: halted at seq ${sink.halt ? sink.halt.seq : "?"} (${sink.halt ? sink.halt.reason : "refused"}); ${behind} waiting for the operator (audit forward-retry --sink ${sink.sink})`;
    case "retrying":
      return `${sink.sink}: unreachable, retrying; ${behind} (${seconds} s) behind`;
    case "caught_up":
      return `${sink.sink}: up to date`;
    case "unknown":
    case "stopped":
      return `${sink.sink}: no instance is forwarding; ${behind} behind`;
    default:
      return sink.lag_events === 0 ? `${sink.sink}: up to date` : `${sink.sink}: ${behind} (${seconds} s) behind`;
  }
}

function lineElement() {
  let line = document.getElementById("forwarding-status");
  if (!line) {
    line = document.createElement("p");
    line.id = "forwarding-status";
    line.className = "muted";
    line.setAttribute("role", "status");
    line.hidden = true;
    const anchor = document.getElementById("summary") || document.querySelector("main") || document.body;
    anchor.appendChild(line);
  }
  return line;
}

async function refresh() {
  const line = lineElement();
  try {
    const response = await fetch("forwarding", { headers: { accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) {
      line.hidden = true;
      return;
    }
    const body = await response.json();
    const sinks = Array.isArray(body.sinks) ? body.sinks : [];
    line.textContent = sinks.length ? `Forwarding — ${sinks.map(describe).join(" · ")}` : "";
    line.hidden = sinks.length === 0;
    line.dataset.state = sinks.some((s) => s.state === "halted") ? "halted" : sinks.some((s) => s.lag_events > 0) ? "behind" : "ok";
  } catch {
    line.hidden = true;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
