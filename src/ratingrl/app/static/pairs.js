// The comparison page: two clips looping in step, answered from the keyboard.
// All text from the server is set with textContent (escaped).
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    sessionStorage.setItem("ratingrl-token", params.get("token"));
    history.replaceState(null, "", location.pathname); // keep the token out of history
  }
  const token = sessionStorage.getItem("ratingrl-token");
  const $ = (id) => document.getElementById(id);
  const left = $("left");
  const right = $("right");
  const videos = [left, right];
  let current = null;
  let busy = false;
  let playing = true; // what the rater asked for with Space; new pairs keep it
  let loaded = 0; // generation of the pair on screen: late events of an old pair are ignored

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

  // -- playing both clips in step ------------------------------------------------------------
  // No `loop` attribute: each clip stops at its end, and both start again together once both
  // have ended, so they never drift apart by a loop. The right clip follows the left one.
  function startBoth() {
    for (const v of videos) v.currentTime = 0;
    if (playing) for (const v of videos) v.play().catch(() => {});
  }
  function showPlaying() { $("play").textContent = playing ? "Pause (Space)" : "Play (Space)"; }
  function togglePlay() {
    playing = !playing;
    if (playing) {
      if (left.ended || right.ended) { startBoth(); }
      else {
        right.currentTime = left.currentTime;
        for (const v of videos) v.play().catch(() => {});
      }
    } else {
      for (const v of videos) v.pause();
    }
    showPlaying();
  }
  for (const v of videos) {
    v.addEventListener("ended", () => { if (left.ended && right.ended) startBoth(); });
  }
  left.addEventListener("timeupdate", () => {
    if (!left.paused && !right.ended && Math.abs(right.currentTime - left.currentTime) > 0.15) {
      right.currentTime = left.currentTime;
    }
  });

  function loadClips(data) {
    const generation = ++loaded;
    let waiting = 2;
    const ready = () => { if (generation === loaded && --waiting === 0) startBoth(); };
    for (const [v, url] of [[left, data.left_url], [right, data.right_url]]) {
      v.addEventListener("canplay", ready, { once: true });
      v.src = url;
      v.load();
    }
  }

  // -- pairs and answers ---------------------------------------------------------------------
  function showProgress(p) {
    if (p) $("progress").textContent = "answered " + p.answered + " / queued " + p.queued;
  }

  function show(data) {
    current = data;
    $("project").textContent = data.project || "Compare clips";
    $("instructions").textContent = data.instructions || "";
    showProgress(data.progress);
    document.body.classList.toggle("done", !data.pair_id);
    document.body.dataset.pair = data.pair_id || "";
    if (!data.pair_id) {
      loaded++;
      for (const v of videos) { v.pause(); v.removeAttribute("src"); }
      say("No pairs left for you. Thank you!");
      return;
    }
    loadClips(data);
  }

  async function next() {
    try { show(await api("GET", "/api/pairs/next")); } catch (e) { say(e.message); }
  }

  async function submit(body) {
    if (!current || !current.pair_id || busy) return;
    busy = true;
    try {
      // Progress changes only once the next pair is on screen, so what it says is what you see.
      await api("POST", "/api/pairs/answers", Object.assign({ pair_id: current.pair_id }, body));
      say("");
      await next();
    } catch (e) { say(e.message); }
    finally { busy = false; }
  }
  const choose = (choice) => submit({ choice });
  const skip = () => submit({ skip: true });

  async function undo() {
    if (busy) return;
    busy = true;
    try {
      const data = await api("POST", "/api/pairs/undo");
      show(data);
      say(data.undone ? "Undone: compare this pair again." : "Nothing to undo.");
    } catch (e) { say(e.message); }
    finally { busy = false; }
  }

  $("play").addEventListener("click", togglePlay);
  $("choose-left").addEventListener("click", () => choose("left"));
  $("choose-right").addEventListener("click", () => choose("right"));
  $("choose-equal").addEventListener("click", () => choose("equal"));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const act = {
      "1": () => choose("left"),
      "2": () => choose("right"),
      "e": () => choose("equal"),
      "s": skip,
      "u": undo,
      " ": togglePlay,
      "?": () => { $("keys").hidden = !$("keys").hidden; },
    }[key];
    if (act) { event.preventDefault(); act(); }
  });

  // A project asks for ratings, pairs or both: send the rater to the right page.
  async function start() {
    try {
      const data = await api("GET", "/api/asks");
      if (data.asks === "ratings") { location.replace("/"); return; }
      $("switch").hidden = data.asks !== "both";
    } catch (e) { say(e.message); return; }
    next();
  }

  if (!token) {
    say("Open the link with your token (…/pairs#token=…) that the operator gave you.");
    document.body.classList.add("done");
  } else {
    start();
  }
})();
