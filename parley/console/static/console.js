// Parley console: live updates without a reload, in plain JavaScript (no framework, no
// inline script: the Content-Security-Policy allows scripts from Parley's own files only).
"use strict";

// Overview panels: <section data-panel="URL" data-refresh-s="N"> re-fetches its fragment.
function refreshPanels() {
  document.querySelectorAll("[data-panel]").forEach((panel) => {
    const url = panel.dataset.panel;
    const body = panel.querySelector(".panel-body");
    const every = 1000 * Number(panel.dataset.refreshS || "2");
    const tick = async () => {
      try {
        const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (answer.status === 401) { window.location.reload(); return; }
        if (answer.ok) { body.innerHTML = await answer.text(); }
      } catch (e) {
        body.innerHTML = '<p class="down" data-state="down"><strong>down</strong>: the console is unreachable</p>';
      }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });
}

// Live regions: <div data-live-stream="SSE URL" data-live-fragment="URL"> re-fetches its
// fragment whenever the stream says something changed (and once after each reconnect).
function followStreams() {
  document.querySelectorAll("[data-live-stream]").forEach((region) => {
    const status = document.getElementById(region.dataset.liveStatus || "");
    let pending = false;
    let again = false;  // a change arrived while a fetch was running: fetch once more after it
    const reload = async () => {
      if (pending) { again = true; return; }
      pending = true;
      try {
        do {
          again = false;
          const answer = await fetch(region.dataset.liveFragment, { credentials: "same-origin", cache: "no-store" });
          if (answer.status === 401) { window.location.reload(); return; }
          if (answer.ok) { region.innerHTML = await answer.text(); }
        } while (again);
      } catch (e) {
        // The console is unreachable: the stream's reconnection will fetch again.
      } finally { pending = false; }
    };
    const source = new EventSource(region.dataset.liveStream);
    const say = (state, text) => { if (status) { status.dataset.state = state; status.textContent = text; } };
    source.onopen = () => { say("open", "live"); reload(); };
    source.onerror = () => say("closed", "reconnecting…");
    // A region about some aggregates only (an element in it with data-live-ids='["id", …]',
    // which its fragment renders) reloads for their changes, not for every one of the kind.
    const wanted = (event) => {
      const holder = region.querySelector("[data-live-ids]");
      if (!holder) { return true; }
      try {
        return JSON.parse(holder.dataset.liveIds).includes(JSON.parse(event.data).id);
      } catch (e) { return true; }
    };
    ["chat", "message", "visitor", "agent"].forEach((name) => source.addEventListener(name, (event) => {
      if (wanted(event)) { reload(); }
    }));
    if (region.hasAttribute("data-load-now")) { reload(); }
  });
}

document.addEventListener("DOMContentLoaded", () => { refreshPanels(); followStreams(); });
