// The operator page: per-rater counts, time per rating, agreement, self-consistency (escaped).
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    sessionStorage.setItem("ratingrl-operator", params.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem("ratingrl-operator");
  const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); return e; };
  const fmt = (x, d) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d);

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h)));
    t.appendChild(head);
    rows.forEach((r) => { const tr = el("tr"); r.forEach((c) => tr.appendChild(el("td", c))); t.appendChild(tr); });
    return t;
  }

  async function load() {
    const box = document.getElementById("projects");
    const message = document.getElementById("message");
    let response;
    try {
      response = await fetch("/api/operator/stats", { headers: { Authorization: "Bearer " + token } });
    } catch (e) { message.textContent = "Could not reach the server."; return; }
    if (!response.ok) {
      message.textContent = response.status === 401 ? "Operator token refused (401)."
        : "Could not load the statistics (" + response.status + ").";
      return;
    }
    const data = await response.json();
    message.textContent = ""; // an earlier failure is over
    box.replaceChildren();
    for (const p of data.projects) {
      box.appendChild(el("h2", p.project + " (" + p.env_id + ")"));
      box.appendChild(el("p", "scale: " + p.scale.names.join(" / ") + "; segments " + p.segments +
        ", rated " + p.segments_rated + ", ratings " + p.ratings + ", shown and unanswered " +
        p.clips_shown_unanswered));
      box.appendChild(el("p", "Krippendorff's alpha (ordinal) on " + p.multi_rated_clips +
        " clips rated by several raters: " + fmt(p.krippendorff_alpha_ordinal, 3)));
      box.appendChild(table(
        ["rater", "rated", "skipped", "undone", "median s / rating", "repeats", "repeat exact", "repeat within 1", "repeat |diff|"],
        p.raters.map((r) => [r.name, r.rated, r.skipped, r.undone, fmt(r.median_seconds, 1), r.self_consistency.n,
          fmt(r.self_consistency.exact, 2), fmt(r.self_consistency.within_one, 2), fmt(r.self_consistency.mean_abs_diff, 2)])));
    }
  }
  document.getElementById("refresh").addEventListener("click", load);
  if (token) load(); else document.getElementById("message").textContent = "Open /operator#token=<operator token>.";
})();
