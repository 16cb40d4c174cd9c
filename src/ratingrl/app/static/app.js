// The rating page: keyboard first. All text from the server is set with textContent (escaped).
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    sessionStorage.setItem("ratingrl-token", params.get("token"));
    history.replaceState(null, "", location.pathname); // keep the token out of history
  }
  const token = sessionStorage.getItem("ratingrl-token");
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  let current = null;
  let busy = false;
  let fps = 25;

  function say(text) { $("message").textContent = text || ""; }

  // A busy server answers 503 with Retry-After before doing anything: wait and ask again.
  async function send(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(path, {
        method,
        headers: Object.assign({ Authorization: "Bearer " + token },
                               body ? { "Content-Type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      if (response.status !== 503 || attempt >= 5) return response;
      const wait = Math.min(10, Number(response.headers.get("Retry-After")) || 1);
      say("The server is busy; trying again in " + wait + " s.");
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      say("");
    }
  }

  async function api(method, path, body) {
    const response = await send(method, path, body);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail;
      throw new Error(typeof detail === "string" ? detail : "request failed (" + response.status + ")");
    }
    return data;
  }

  function showProgress(p) {
    if (p) $("progress").textContent = "rated " + p.rated + " / queued " + p.queued;
  }

  function buildLevels(scale) {
    const box = $("levels");
    if (box.dataset.n === String(scale.n)) return;
    box.replaceChildren();
    scale.names.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = (i + 1) + " " + name;
      b.dataset.level = String(i);
      b.addEventListener("click", () => rate(i));
      box.appendChild(b);
    });
    box.dataset.n = String(scale.n);
  }

  function show(data) {
    current = data;
    fps = data.fps || 25;
    $("project").textContent = data.project || "Rate clips";
    $("instructions").textContent = data.instructions || "";
    buildLevels(data.scale);
    showProgress(data.progress);
    document.body.classList.toggle("done", !data.clip_id);
    document.body.dataset.clip = data.clip_id || "";
    if (!data.clip_id) {
      video.removeAttribute("src");
      say("No clips left for you. Thank you!");
      return;
    }
    video.src = data.video_url;
    video.playbackRate = Number($("speed").value);
    video.play().catch(() => {});
  }

  async function next() {
    try { show(await api("GET", "/api/next")); } catch (e) { say(e.message); }
  }

  async function submit(body) {
    if (!current || !current.clip_id || busy) return;
    busy = true;
    try {
      // Progress changes only once the next clip is on screen, so what it says is what you see.
      await api("POST", "/api/ratings", Object.assign({ clip_id: current.clip_id }, body));
      say("");
      await next();
    } catch (e) { say(e.message); }
    finally { busy = false; }
  }
  const rate = (level) => submit({ rating: level });
  const skip = () => submit({ skip: true });

  async function undo() {
    if (busy) return;
    busy = true;
    try {
      const data = await api("POST", "/api/undo");
      if (!data.undone) say("Nothing to undo."); else say("Undone: rate this clip again.");
      show(data);
    } catch (e) { say(e.message); }
    finally { busy = false; }
  }

  function togglePlay() {
    if (video.paused) video.play().catch(() => {}); else video.pause();
  }
  video.addEventListener("play", () => { $("play").textContent = "Pause (Space)"; });
  video.addEventListener("pause", () => { $("play").textContent = "Play (Space)"; });
  video.addEventListener("timeupdate", () => {
    if (video.duration) $("scrub").value = String(Math.round(1000 * video.currentTime / video.duration));
  });
  $("scrub").addEventListener("input", () => {
    if (video.duration) video.currentTime = video.duration * Number($("scrub").value) / 1000;
  });
  $("speed").addEventListener("change", () => { video.playbackRate = Number($("speed").value); });
  $("play").addEventListener("click", togglePlay);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);

  async function toggleRefs() {
    const box = $("refs");
    if (!box.hidden) { box.hidden = true; return; }
    try {
      const data = await api("GET", "/api/references");
      box.replaceChildren();
      if (!data.references.length) {
        const p = document.createElement("p");
        p.textContent = "No reference clips in this project.";
        box.appendChild(p);
      }
      for (const ref of data.references) {
        const fig = document.createElement("figure");
        const v = document.createElement("video");
        v.src = ref.video_url; v.loop = true; v.muted = true; v.autoplay = true;
        const cap = document.createElement("figcaption");
        cap.textContent = (ref.level + 1) + " " + ref.name;
        fig.append(v, cap);
        box.appendChild(fig);
      }
      box.hidden = false;
    } catch (e) { say(e.message); }
  }
  $("refs-toggle").addEventListener("click", toggleRefs);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target && ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)
        && event.key !== " ") return;
    const key = event.key;
    const n = current && current.scale ? current.scale.n : 0;
    if (/^[1-9]$/.test(key) && Number(key) <= n) { event.preventDefault(); rate(Number(key) - 1); }
    else if (key === "s" || key === "S") { event.preventDefault(); skip(); }
    else if (key === "u" || key === "U") { event.preventDefault(); undo(); }
    else if (key === " ") { event.preventDefault(); togglePlay(); }
    else if (key === "ArrowRight" || key === "ArrowLeft") {
      event.preventDefault();
      video.pause();
      const step = (key === "ArrowRight" ? 1 : -1) / fps;
      video.currentTime = Math.max(0, Math.min(video.duration || 0, video.currentTime + step));
    }
    else if (key === "r" || key === "R") { event.preventDefault(); toggleRefs(); }
    else if (key === "?") { event.preventDefault(); $("keys").hidden = !$("keys").hidden; }
  });

  // A project asks for ratings, pairs or both: comparisons are on /pairs (pairs.js).
  async function start() {
    try {
      const data = await api("GET", "/api/asks");
      if (data.asks === "pairs") { location.replace("/pairs"); return; }
      $("switch").hidden = data.asks !== "both";
    } catch (e) { say(e.message); return; }
    next();
  }

  if (!token) {
    say("Open the link with your token (…/#token=…) that the operator gave you.");
    document.body.classList.add("done");
  } else {
    start();
  }
})();
