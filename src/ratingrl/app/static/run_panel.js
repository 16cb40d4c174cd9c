// The run people are teaching: progress of `ratingrl train --ratings-db` runs on the operator
// page, read from /api/operator/runs every few seconds (no reload). Shows the latest run, or
// the one the operator picks: true and learned evaluation return over env steps (with their
// 95% intervals), labels asked for and collected per round, the learned reward's loss per
// update, and the policy's latest evaluation clip (rendered by the server like rating clips).
// Charts use RatingCharts (charts.js); each chart's numbers are in its data-values attribute.
"use strict";
(function () {
  const panel = document.getElementById("run-panel");
  if (!panel) return;
  const POLL_MS = 2000;
  const token = () => sessionStorage.getItem("ratingrl-operator");
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = String(text);
    return e;
  };
  const fmt = (x, d) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d);
  let chosen = null;  // a run the operator picked; null follows the latest
  let shownClip = null;
  let listed = null;  // the run list the chooser shows (rebuilt only when it changes)

  function skeleton() {
    panel.replaceChildren();
    const head = el("div", { class: "dash-head" });
    head.appendChild(el("h2", { id: "run-title" }, "The run people are teaching"));
    const label = el("label", { id: "run-choose", hidden: "" }, "run ");
    label.appendChild(el("select", { id: "run-select" }));
    head.appendChild(label);
    panel.appendChild(head);
    panel.appendChild(el("p", { id: "run-status", role: "status" }));
    const grid = el("div", { class: "dash-grid", id: "run-grid", hidden: "" });
    for (const id of ["run-chart-true", "run-chart-learned", "run-chart-rounds", "run-chart-loss"]) {
      const card = el("div", { class: "card" });
      card.appendChild(el("div", { id }));
      grid.appendChild(card);
    }
    const card = el("div", { class: "card" });
    const figure = el("figure", { id: "run-clip-figure" });
    const video = el("video", { id: "run-clip", muted: "", loop: "", autoplay: "", playsinline: "" });
    video.muted = true;
    figure.appendChild(video);
    figure.appendChild(el("figcaption", { id: "run-clip-caption" }, "no evaluation clip yet"));
    card.appendChild(figure);
    grid.appendChild(card);
    panel.appendChild(grid);
    document.getElementById("run-select").addEventListener("change", (e) => {
      chosen = e.target.value || null;
      load();
    });
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    if (!response.ok) throw new Error(String(response.status));
    return response.json();
  }

  function runLabel(r) {
    return r.name + " (" + r.method + ", " + r.env_id + ", " + r.status + ")";
  }

  function chooser(runs) {
    const key = JSON.stringify(runs.map((r) => [r.run_id, r.status]));
    if (key === listed) return;
    listed = key;
    const select = document.getElementById("run-select");
    document.getElementById("run-choose").hidden = runs.length < 2;
    const options = [el("option", { value: "" }, "latest: " + runLabel(runs[0]))];
    runs.forEach((r) => options.push(el("option", { value: r.run_id }, runLabel(r))));
    select.replaceChildren(...options);
    select.value = chosen || "";
  }

  function line(id, series, opts) {
    const box = document.getElementById(id);
    if (window.RatingCharts) { window.RatingCharts.line(box, series, opts); return; }
    box.dataset.values = JSON.stringify({ series });  // no chart helper: the numbers as text
    box.textContent = opts.title + ": " + series.map((s) => s.name + " " + JSON.stringify(s.points)).join("; ");
  }

  // An evaluation return and its 95% interval (dashed, same colour) over env steps.
  function returns(id, evaluations, key, title, colour) {
    const withKey = evaluations.filter((e) => e[key]);
    const point = (f) => withKey.map((e) => [e.env_steps, f(e[key])]);
    const series = [{ name: "mean", points: point((r) => r.mean), color: colour }];
    if (withKey.some((e) => e[key].ci95)) {
      series.push({ name: "95% low", points: point((r) => r.ci95 ? r.ci95[0] : null), color: colour, dash: true, width: 1 });
      series.push({ name: "95% high", points: point((r) => r.ci95 ? r.ci95[1] : null), color: colour, dash: true, width: 1 });
    }
    const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((y) => y !== null);
    const pad = ys.length ? Math.max(1e-6, (Math.max(...ys) - Math.min(...ys)) * 0.05) : 1;
    const bounds = ys.length ? { yMin: Math.min(...ys) - pad, yMax: Math.max(...ys) + pad } : {};
    line(id, series, { title, xLabel: "env steps", ...bounds });
  }

  function rounds(data) {
    const box = document.getElementById("run-chart-rounds");
    const categories = data.rounds.map((r) => String(r.round));
    const series = [
      { name: "clips asked", values: data.rounds.map((r) => r.requested) },
      { name: "labels collected", values: data.rounds.map((r) => r.collected) },
    ];
    // a clip shown to several people brings several labels
    const opts = { title: "Clips asked and labels collected per round", xLabel: "round" };
    if (window.RatingCharts) window.RatingCharts.bars(box, categories, series, opts);
    else { box.dataset.values = JSON.stringify({ categories, series }); box.textContent = opts.title + ": " + JSON.stringify(series); }
  }

  function clip(info) {
    const video = document.getElementById("run-clip");
    const caption = document.getElementById("run-clip-caption");
    if (!info) { caption.textContent = "no evaluation clip yet"; return; }
    if (info.url !== shownClip) {
      shownClip = info.url;
      video.src = info.url;
      video.dataset.envSteps = String(info.env_steps);
      video.play().catch(() => {});
    }
    caption.textContent = "The policy at env step " + info.env_steps + " (an evaluation episode, its first " +
      info.frames + " steps)";
  }

  function show(data) {
    const run = data.run;
    const labels = data.labels.length ? data.labels[data.labels.length - 1].labels : 0;
    const last = data.evaluations[data.evaluations.length - 1];
    panel.dataset.runId = run.run_id;
    panel.dataset.envSteps = String(run.env_steps);
    document.getElementById("run-status").textContent = run.name + ": " + run.algo + " " + run.method +
      " on " + run.env_id + ", " + run.status + ", env step " + run.env_steps + " of " + run.total_steps +
      ", " + labels + " labels; evaluated every " + run.eval_every + " steps" +
      (last ? ", latest true return " + fmt(last.true_return.mean, 1) : "");
    document.getElementById("run-grid").hidden = false;
    returns("run-chart-true", data.evaluations, "true_return", "True evaluation return", "#0072B2");
    returns("run-chart-learned", data.evaluations, "learned_return", "Learned evaluation return", "#E69F00");
    rounds(data);
    // one point per reward update, at the number of labels it learned from
    line("run-chart-loss", [{ name: "loss", points: data.updates.map((u) => [u.labels, u.loss]) }],
      { title: "Learned-reward loss per update", xLabel: "labels" });
    clip(data.clip);
  }

  let busy = false;
  async function load() {
    if (busy || !token()) return;
    busy = true;
    const status = document.getElementById("run-status");
    try {
      const runs = (await getJson("/api/operator/runs")).runs;
      if (!runs.length) {
        status.textContent = "No training run has reported yet: start one with ratingrl train --ratings-db.";
        return;
      }
      if (chosen && !runs.some((r) => r.run_id === chosen)) chosen = null;
      chooser(runs);
      show(await getJson("/api/operator/runs/" + (chosen || runs[0].run_id)));
    } catch (e) {
      status.textContent = "Could not load the runs (" + e.message + ").";
    } finally {
      busy = false;
    }
  }

  skeleton();
  if (token()) {
    load();
    setInterval(load, POLL_MS);
  }
})();
