// The operator's dashboard: polls GET /api/operator/dashboard every few seconds and redraws its
// charts (static/charts.js) without reloading. Careless raters are flagged in a banner and in red.
// One request at a time; the next waits POLL_MS, or ten times as long as the last one took (a
// big project's server is never kept busy by an open page).
"use strict";
(function () {
  const POLL_MS = 3000;
  const token = sessionStorage.getItem("ratingrl-operator");
  const C = window.RatingCharts;
  const $ = (id) => document.getElementById(id);
  const section = $("dashboard");
  let chosen = null;   // the project the operator picked (null: the server's first)
  let timer = null;
  let updates = 0;

  function say(text) { $("dash-message").textContent = text; }

  function queueTiles(q) {
    const box = $("dash-queue");
    box.dataset.values = JSON.stringify(q);
    const tiles = [
      ["queued", q.clips_open, "clips still needing a rater, of " + q.clips],
      ["shown", q.shown + q.repeats_shown, "on screen, not answered yet"],
      ["rated", q.rated, "first-time ratings"],
      ["skipped", q.skipped, "\"can't tell\""],
      ["repeats rated", q.repeats_rated, "hidden repeats answered"],
      ["repeats pending", q.repeats_pending, "hidden repeats waiting"],
      ["repeats due", q.repeats_due, "pending and due now"],
    ];
    box.replaceChildren();
    for (const [name, value, help] of tiles) {
      const div = document.createElement("div");
      div.className = "tile";
      div.title = help;
      div.dataset.name = name;
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = String(value);
      div.append(dt, dd);
      box.appendChild(div);
    }
  }

  function raterTable(d) {
    const table = $("dash-raters");
    const cells = (tag, values) => { const tr = document.createElement("tr"); values.forEach((v) => { const c = document.createElement(tag); c.textContent = String(v); tr.appendChild(c); }); return tr; };
    table.replaceChildren(cells("th", ["rater", "rated", "skipped", "repeats", "pending", "per min", "repeat same"]));
    for (const r of d.raters) {
      const q = r.queue;
      const row = cells("td", [r.name + (r.active ? "" : " (revoked)"), q.rated, q.skipped, q.repeats_rated, q.repeats_pending,
        C.fmt(r.rate_per_min, 1), C.fmt(r.consistency.exact, 2) + (r.careless ? " ⚠ careless" : "")]);
      if (r.careless) row.className = "flagged";
      row.dataset.rater = r.name;
      table.appendChild(row);
    }
  }

  function careless(d) {
    const flagged = d.raters.filter((r) => r.careless);
    const banner = $("dash-careless");
    banner.hidden = flagged.length === 0;
    banner.dataset.raters = JSON.stringify(flagged.map((r) => r.name));
    banner.textContent = flagged.length === 0 ? "" : "⚠ Careless rater" + (flagged.length > 1 ? "s" : "") + ": " +
      flagged.map((r) => `${r.name} (same level on ${C.fmt(r.consistency.exact, 2)} of ${r.consistency.repeats} hidden repeats)`).join(", ") +
      `. Rule: at least ${d.settings.min_repeats} repeats and fewer than ${C.fmt(d.settings.careless_below, 2)} the same.`;
  }

  function draw(d) {
    const names = d.raters.map((r) => r.name);
    careless(d);
    queueTiles(d.queue);
    raterTable(d);
    const s = d.settings;
    C.hbars($("chart-consistency"), d.raters.map((r) => ({
      label: r.name,
      value: r.consistency.exact,
      flag: r.careless,
      note: "n=" + r.consistency.repeats + (r.careless ? " ⚠ careless" : ""),
    })), {
      title: "Repeat self-consistency (same level on a hidden repeat)",
      threshold: { value: s.careless_below, label: `flag < ${C.fmt(s.careless_below, 2)} (n ≥ ${s.min_repeats})` },
    });
    const times = d.timeline.times;
    const series = d.raters.map((r, i) => ({ name: r.name, points: times.map((t, j) => [t, r.timeline[j]]), color: C.color(i) }));
    series.push({ name: "total", points: times.map((t, j) => [t, d.timeline.total[j]]), color: "#222", width: 2.5 });
    C.line($("chart-timeline"), series, { title: "Ratings over time (cumulative, per rater and total)", time: true });
    const rate = $("dash-rate");
    rate.dataset.total = String(d.rate_per_min);
    rate.dataset.raters = JSON.stringify(Object.fromEntries(d.raters.map((r) => [r.name, r.rate_per_min])));
    rate.textContent = `Now ${C.fmt(d.rate_per_min, 1)} ratings/min (last ${Math.round(s.rate_window_s / 60)} min): ` +
      d.raters.map((r) => `${r.name} ${C.fmt(r.rate_per_min, 1)}`).join(" · ");
    const share = (counts) => { const n = counts.reduce((a, b) => a + b, 0); return counts.map((c) => (n ? c / n : 0)); };
    const dist = d.raters.map((r, i) => ({ name: r.name, values: share(r.distribution), color: C.color(i) }));
    dist.push({ name: "all", values: share(d.distribution), color: "#222" });
    C.bars($("chart-distribution"), d.scale.names, dist, {
      title: "Rating distribution (share of each rater's ratings)", yMax: 1, format: (v) => C.fmt(v, 2),
    });
    $("chart-distribution").dataset.counts = JSON.stringify({ all: d.distribution, ...Object.fromEntries(d.raters.map((r) => [r.name, r.distribution])) });
    const alpha = d.agreement.over_time.map((p) => [p.t, p.alpha]);
    C.line($("chart-alpha"), [{ name: "alpha", points: alpha, color: "#0072B2" }], {
      title: `Krippendorff's alpha (ordinal): ${C.fmt(d.agreement.alpha, 3)} on ${d.agreement.clips} shared clips`,
      time: true, yMin: Math.min(0, ...alpha.map((p) => (p[1] === null ? 0 : p[1]))), yMax: 1,
      hlines: [{ y: 0.8, label: "0.8 reliable" }, { y: 0.667, label: "0.667 tentative" }],
    });
    C.matrix($("chart-matrix"), names, d.agreement.matrix.map((row) => row.map((c) => (c ? { value: c.exact, note: "n=" + c.n } : null))), {
      title: "Rater agreement (same level on clips both rated)",
    });
  }

  function projects(d) {
    const select = $("dash-project");
    $("dash-choose").hidden = d.projects.length < 2;
    if (select.options.length !== d.projects.length || [...select.options].some((o, i) => o.value !== d.projects[i])) {
      select.replaceChildren(...d.projects.map((name) => { const o = document.createElement("option"); o.value = name; o.textContent = name; return o; }));
    }
    if (d.project !== null) select.value = d.project;
  }

  async function poll() {
    clearTimeout(timer);
    let stop = false;
    const started = performance.now();
    try {
      const query = chosen === null ? "" : "?project=" + encodeURIComponent(chosen);
      const response = await fetch("/api/operator/dashboard" + query, { headers: { Authorization: "Bearer " + token } });
      if (response.status === 401) { section.hidden = true; stop = true; return; }  // operator.js says why
      section.hidden = false;
      if (!response.ok) {
        let detail = "";
        try { detail = (await response.json()).detail || ""; } catch (e) { /* not JSON */ }
        say(`Dashboard not updated (${response.status})${detail ? ": " + detail : ""}; retrying.`);
        return;
      }
      const d = await response.json();
      projects(d);
      if (d.project === null) { say("No project yet."); return; }
      draw(d);
      say("");
      updates += 1;
      section.dataset.updates = String(updates);
      section.dataset.project = d.project;
      $("dash-updated").textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString() + " · every " + POLL_MS / 1000 + " s";
    } catch (e) {
      section.hidden = false;
      say("Dashboard: could not reach the server; retrying.");
    } finally {
      if (!stop) timer = setTimeout(poll, Math.max(POLL_MS, 10 * (performance.now() - started)));
    }
  }

  $("dash-project").addEventListener("change", (e) => { chosen = e.target.value; poll(); });
  $("refresh").addEventListener("click", poll);
  if (token) poll();
})();
