// A publish run's progress page (/domains/<d>/publish/runs/<id>): while the run is running,
// fetch the page again every few seconds and swap in its #run section, so each step's state
// shows as the journal records it. No inline script (the CSP allows only these files); without
// JavaScript the page says to reload it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const poll = async () => {
    const current = document.getElementById("run");
    if (!current || !current.dataset.poll) return;
    const every = Number(current.dataset.poll) || 2000;
    try {
      const response = await fetch(window.location.href, {
        headers: { accept: "text/html" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("run");
        if (fresh) current.replaceWith(document.importNode(fresh, true));
      }
    } catch (error) {
      // The server may be restarting: try again at the next turn.
    }
    const now = document.getElementById("run");
    if (now && now.dataset.poll) window.setTimeout(poll, every);
  };
  const first = document.getElementById("run");
  if (first && first.dataset.poll) window.setTimeout(poll, Number(first.dataset.poll) || 2000);
});
