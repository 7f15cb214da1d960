// The explore page: a canvas map of a movie space and a side panel that streams the ELM's answers.
// Plain JS, no library: the page must work offline from the installed package.
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
                "#469990", "#800000", "#808000", "#000075", "#a9a9a9"];
const S = { status: null, map: null, view: { k: 1, x: 0, y: 0 }, mode: "movie", a: null, b: null, user: null,
            marker: null, path: null, ask: null, hover: -1, index: new Map() };

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : { method: "POST", body: JSON.stringify(body),
                                                         headers: { "Content-Type": "application/json" } });
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}
function message(text, info) { $("message").textContent = text || ""; $("message").className = info ? "info" : ""; }
function option(sel, values, label) {
  sel.innerHTML = "";
  for (const v of values) { const o = document.createElement("option"); o.value = v.value ?? v; o.textContent = label ? label(v) : v; sel.append(o); }
}

// -- status ----------------------------------------------------------------------------------------
async function poll() {
  try { S.status = await api("/api/status"); } catch (e) { message(`the server does not answer: ${e.message}`); return setTimeout(poll, 2000); }
  const st = S.status, el = $("status");
  el.className = st.state;
  el.textContent = st.state === "ready" ? `model ready (train ${st.train || "folder"})` :
                   st.state === "loading" ? "model loading: the map works meanwhile" : "no model";
  if (st.state === "error") { message(st.error); if (!st.spaces) return; }
  if (!S.map && st.spaces) await init();
  if (st.state === "loading") setTimeout(poll, 1000);
}

async function init() {
  const st = S.status;
  option($("space"), st.spaces.movie);
  option($("task"), st.tasks.movie);
  $("task").value = "summary";
  option($("attribute"), st.attributes[st.spaces.movie[0]] || []);
  await loadMap(st.spaces.movie[0]);
  if (st.spaces.user.length) {
    const users = await api(`/api/users?space=${st.spaces.user[0]}`);
    option($("users"), [{ value: "", id: "" }, ...users.map((u) => ({ value: u.id, ...u }))],
           (u) => u.id === "" ? "choose a user" : `user ${u.id}${u.heldout ? " (held out)" : ""}`);
  }
}

// -- the map ---------------------------------------------------------------------------------------
async function loadMap(space) {
  S.map = await api(`/api/map?space=${encodeURIComponent(space)}`);
  S.index = new Map(S.map.id.map((id, i) => [id, i]));
  const xs = S.map.x, ys = S.map.y, c = $("map");
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const k = 0.92 * Math.min(c.clientWidth / (x1 - x0), c.clientHeight / (y1 - y0));
  S.view = { k, x: c.clientWidth / 2 - k * (x0 + x1) / 2, y: c.clientHeight / 2 + k * (y0 + y1) / 2 };
  S.fitK = k;
  $("legend").innerHTML = S.map.genres.map((g, i) => `<span style="background:${COLORS[i % COLORS.length]}"></span>${g}`).join("");
  draw();
  c.dataset.points = S.map.id.length;
}
const sx = (x) => S.view.x + S.view.k * x, sy = (y) => S.view.y - S.view.k * y;

function draw() {
  const c = $("map"), dpr = window.devicePixelRatio || 1;
  if (c.width !== c.clientWidth * dpr) { c.width = c.clientWidth * dpr; c.height = c.clientHeight * dpr; }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, c.clientWidth, c.clientHeight);
  if (!S.map) return;
  const m = S.map;
  for (let i = 0; i < m.id.length; i++) {
    const X = sx(m.x[i]), Y = sy(m.y[i]);
    if (X < -5 || Y < -5 || X > c.clientWidth + 5 || Y > c.clientHeight + 5) continue;
    g.beginPath(); g.arc(X, Y, 2.2, 0, 6.3);
    const col = COLORS[m.genre[i] % COLORS.length];
    if (m.heldout[i]) { g.strokeStyle = col; g.lineWidth = 1; g.stroke(); } else { g.fillStyle = col + "b0"; g.fill(); }
  }
  const ring = (id, col, label) => {
    const i = S.index.get(id); if (i === undefined) return;
    const X = sx(m.x[i]), Y = sy(m.y[i]);
    g.beginPath(); g.arc(X, Y, 7, 0, 6.3); g.lineWidth = 2.5; g.strokeStyle = col; g.stroke();
    g.fillStyle = "#000"; g.font = "bold 12px sans-serif"; g.fillText(label, X + 9, Y - 8);
  };
  if (S.a !== null && S.b !== null && S.mode === "mix") {
    const i = S.index.get(S.a), j = S.index.get(S.b);
    g.beginPath(); g.moveTo(sx(m.x[i]), sy(m.y[i])); g.lineTo(sx(m.x[j]), sy(m.y[j]));
    g.setLineDash([5, 4]); g.strokeStyle = "#333"; g.lineWidth = 1.5; g.stroke(); g.setLineDash([]);
  }
  if (S.a !== null) ring(S.a, "#000", S.mode === "mix" ? "A" : "");
  if (S.b !== null && S.mode === "mix") ring(S.b, "#000", "B");
  if (S.marker) {
    if (S.mode === "concept" && S.a !== null) {
      const i = S.index.get(S.a);
      g.beginPath(); g.moveTo(sx(m.x[i]), sy(m.y[i])); g.lineTo(sx(S.marker.x), sy(S.marker.y));
      g.strokeStyle = "#333"; g.lineWidth = 1.5; g.stroke();
    }
    g.beginPath(); g.arc(sx(S.marker.x), sy(S.marker.y), 6, 0, 6.3); g.fillStyle = "#ffd700"; g.fill();
    g.lineWidth = 2; g.strokeStyle = "#000"; g.stroke();
  }
}

function pick(ev) {
  if (!S.map) return -1;
  const r = $("map").getBoundingClientRect(), X = ev.clientX - r.left, Y = ev.clientY - r.top;
  let best = -1, bd = 64;
  for (let i = 0; i < S.map.id.length; i++) {
    const d = (sx(S.map.x[i]) - X) ** 2 + (sy(S.map.y[i]) - Y) ** 2;
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}
function centre(id) {
  const i = S.index.get(id), c = $("map");
  if (i === undefined) return;
  S.view.k = Math.max(S.view.k, 2.5 * S.fitK);  // close enough to see its neighbours
  S.view.x = c.clientWidth / 2 - S.view.k * S.map.x[i]; S.view.y = c.clientHeight / 2 + S.view.k * S.map.y[i];
  draw();
}

(function mouse() {
  const c = $("map"); let drag = null;
  c.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, vx: S.view.x, vy: S.view.y, moved: false }; });
  window.addEventListener("mouseup", (e) => {
    if (drag && !drag.moved && e.target === c) { const i = pick(e); if (i >= 0) choose(S.map.id[i]); }
    drag = null;
  });
  c.addEventListener("mousemove", (e) => {
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) { S.view.x = drag.vx + dx; S.view.y = drag.vy + dy; draw(); }
      return;
    }
    const i = pick(e), tip = $("tip");
    if (i < 0) { tip.style.display = "none"; return; }
    const m = S.map, r = c.getBoundingClientRect();
    tip.innerHTML = `<b>${m.title[i]}</b><br>${m.genres_all[i].replaceAll("|", ", ")}${m.heldout[i] ? "<br><i>held out</i>" : ""}`;
    tip.style.display = "block"; tip.style.left = `${e.clientX - r.left + 12}px`; tip.style.top = `${e.clientY - r.top + 12}px`;
  });
  c.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = c.getBoundingClientRect(), X = e.clientX - r.left, Y = e.clientY - r.top, f = Math.exp(-e.deltaY / 400);
    S.view.x = X - (X - S.view.x) * f; S.view.y = Y - (Y - S.view.y) * f; S.view.k *= f; draw();
  }, { passive: false });
  window.addEventListener("resize", draw);
})();

// -- choosing and asking ---------------------------------------------------------------------------
function choose(id) {
  if (S.mode === "mix") {
    if (S.a === null || S.b !== null) { S.a = id; S.b = null; } else if (id !== S.a) S.b = id;
    $("mix-a").textContent = S.a === null ? "click a movie" : title(S.a);
    $("mix-b").textContent = S.b === null ? "then another" : title(S.b);
    draw();
    if (S.b !== null) askMix(); else refs(id);
    return;
  }
  S.a = id; draw();
  if (S.mode === "user" && S.user !== null) return ask({ task: "user_would_like", user: S.user, movie: id }, `Would user ${S.user} like ${title(id)}?`);
  if (S.mode === "concept") return askConcept();
  ask({ task: $("task").value, movie: id }, title(id));
  refs(id);
}
const title = (id) => S.map.title[S.index.get(id)] || `movie ${id}`;

async function askMix() {
  const a = +$("mix-slider").value, body = { movies: [S.a, S.b], a, space: $("space").value };
  const path = await Promise.all([0, 0.25, 0.5, 0.75, 1].map((t) => api("/api/locate", { ...body, a: t })));
  $("mix-path").innerHTML = path.map((p, k) => `<li value="${k}">a=${k / 4}: nearest ${p.nearest_title} (cos ${p.nearest_cosine})</li>`).join("");
  ask({ task: $("task").value, ...body }, `${title(S.a)} + ${title(S.b)}, a = ${a.toFixed(2)}`);
}
function askConcept() {
  if (S.a === null) return message("click a movie to move along the concept", true);
  const a = +$("concept-slider").value, attr = $("attribute").value;
  ask({ task: $("task").value, movie: S.a, attribute: attr, a, space: $("space").value }, `${title(S.a)} + ${a} sd of ${attr}`);
}

async function refs(id) {
  try {
    const m = await api(`/api/movie/${id}`), t = m.texts[$("task").value] || {};
    $("refs").innerHTML = `<div>${m.title}: ${m.genres.join(", ")}${m.heldout ? " &middot; <i>held out</i>" : ""}</div>` +
      ["teacher", "baseline"].filter((k) => t[k]).map((k) => `<h4>${k}</h4><p></p>`).join("");
    $("refs").querySelectorAll("p").forEach((p, k) => { p.textContent = t[["teacher", "baseline"].filter((q) => t[q])[k]]; });
  } catch (e) { message(e.message); }
}

async function ask(body, head) {
  if (S.ask) S.ask.abort();
  const ctl = new AbortController(); S.ask = ctl;
  body.space = body.space || $("space").value;
  $("answer-head").textContent = head; $("answer").textContent = ""; $("answer").className = "streaming";
  $("where").textContent = ""; $("score").textContent = ""; message("");
  if (S.mode !== "mix" && S.mode !== "concept") $("refs").innerHTML = "";
  let r;
  try {
    r = await fetch("/api/ask", { method: "POST", body: JSON.stringify(body), signal: ctl.signal, headers: { "Content-Type": "application/json" } });
    if (!r.ok) { const d = await r.json().catch(() => ({})); throw new Error(d.error || `HTTP ${r.status}`); }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        const kind = /^event: (.*)$/m.exec(block)[1], data = JSON.parse(/^data: (.*)$/m.exec(block)[1]);
        handle(kind, data);
      }
    }
  } catch (e) { if (e.name !== "AbortError") { message(e.message); $("answer").className = ""; } }
}

function handle(kind, d) {
  if (kind === "point") {
    const p = d.points[d.points.length - 1];
    if (p.x !== undefined && (S.mode === "mix" || S.mode === "concept")) { S.marker = p; draw(); } else { S.marker = null; draw(); }
    $("where").innerHTML = d.points.map((q) => `${q.label}: nearest <b>${q.nearest_title || (q.nearest_id !== null ? "id " + q.nearest_id : "none")}</b>` +
      ` cosine ${q.nearest_cosine}` + (q.outside ? ` <span class="outside">outside the data</span> (95% of real points have a neighbour at &ge; ${q.reference_cosine})` : "") +
      (q.attribute_probability !== undefined ? `; concept probability of the vector ${q.attribute_probability}` : "")).join("<br>");
  } else if (kind === "queued") {
    message(d.loading ? `queued: the model is loading (${d.ahead} ahead)` : `queued: ${d.ahead} request(s) ahead`, true);
  } else if (kind === "start") {
    message("");
  } else if (kind === "token") {
    $("answer").textContent += d.text;
  } else if (kind === "done") {
    $("answer").textContent = d.text || "(empty answer)"; $("answer").className = "";
    $("answer").dataset.done = (+($("answer").dataset.done || 0) + 1).toString();
    $("score").textContent = (d.attribute_score !== null ? `concept score of the text ${d.attribute_score}; ` : "") + `answered in ${d.total_s.toFixed(1)} s`;
  } else if (kind === "error") {
    message(d.message); $("answer").className = "";
  }
}

// -- controls --------------------------------------------------------------------------------------
function setMode(mode) {
  S.mode = mode; S.marker = null;
  for (const m of ["movie", "mix", "concept", "user"]) {
    $(`mode-${m}`).className = m === mode ? "on" : "";
    if (m !== "movie") $(m).hidden = m !== mode;
  }
  if (mode === "user") option($("task"), S.status.tasks.user); else option($("task"), S.status.tasks.movie);
  if (mode !== "user") { $("task").value = "summary"; S.user = null; $("users").value = ""; $("user-top").innerHTML = ""; }
  if (mode === "mix") { S.b = null; $("mix-a").textContent = S.a === null ? "click a movie" : title(S.a); $("mix-b").textContent = "then another"; }
  if (mode === "concept" && S.a !== null) askConcept();
  draw();
}
for (const m of ["movie", "mix", "concept", "user"]) $(`mode-${m}`).addEventListener("click", () => setMode(m));
$("space").addEventListener("change", () => { option($("attribute"), S.status.attributes[$("space").value] || []); loadMap($("space").value); });
$("task").addEventListener("change", () => { if (S.mode === "user" && S.user !== null) pickUser(); else if (S.a !== null) choose(S.a); });
$("mix-slider").addEventListener("input", () => {
  const a = +$("mix-slider").value; $("mix-value").textContent = a.toFixed(2);
  if (S.a !== null && S.b !== null) {
    const i = S.index.get(S.a), j = S.index.get(S.b), m = S.map;  // PCA is linear: the mix lies on the segment
    S.marker = { x: (1 - a) * m.x[i] + a * m.x[j], y: (1 - a) * m.y[i] + a * m.y[j] }; draw();
  }
});
$("mix-slider").addEventListener("change", () => { if (S.a !== null && S.b !== null) askMix(); });
$("concept-slider").addEventListener("input", () => { $("concept-value").textContent = (+$("concept-slider").value).toFixed(1); });
$("concept-slider").addEventListener("change", askConcept);
$("attribute").addEventListener("change", askConcept);
$("users").addEventListener("change", pickUser);
async function pickUser() {
  const id = $("users").value;
  if (!id) return;
  S.user = +id;
  try {
    const u = await api(`/api/user/${id}`);
    $("user-top").innerHTML = u.top.map((t) => `<li>${t.title} (${t.rating})</li>`).join("");
  } catch (e) { return message(e.message); }
  ask({ task: "user_profile", user: S.user }, `user ${id}${$("users").selectedOptions[0].text.includes("held") ? " (held out)" : ""}: profile`);
}

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $("search").value.trim();
    if (!q) { $("hits").innerHTML = ""; return; }
    try {
      const hits = await api(`/api/search?q=${encodeURIComponent(q)}`);
      if (!hits.length) { $("hits").innerHTML = ""; return message(`no title contains "${q}"`); }
      message("");
      $("hits").innerHTML = hits.map((h) => `<li data-id="${h.id}"></li>`).join("");
      $("hits").querySelectorAll("li").forEach((li, k) => { li.textContent = hits[k].title; });
    } catch (e) { message(e.message); }
  }, 200);
});
$("hits").addEventListener("click", (e) => {
  const id = +e.target.dataset.id;
  if (!id && id !== 0) return;
  $("hits").innerHTML = ""; $("search").value = e.target.textContent;
  if (!S.index.has(id)) return message(`${e.target.textContent} has no vector in ${$("space").value}`);
  centre(id); choose(id);
});
poll();
