/* atlasgen zoomable map: the feature map and the activation atlas of one layer.
 *
 * Leaflet (static/vendor/leaflet, BSD-2) handles pan and zoom (wheel, drag,
 * pinch, keyboard) in a simple CRS; one canvas layer draws what is in view from
 * window.ATLAS_MAP (map/data.js, a classic script, so file:// works) and from
 * sprite sheets loaded as <img>. Semantic levels of detail: zoomed out, each
 * cluster of the current hierarchy level is one representative thumbnail and
 * its name; zoomed in past the last level, every feature is drawn. The URL hash
 * keeps the view (#m=features&z=..&x=..&y=..); #f=<id> centres on a feature. */
(function () {
  "use strict";
  var D = window.ATLAS_MAP, L = window.L;
  var host = document.getElementById("map-view");
  if (!D || !L || !host) return;
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (n) { n.hidden = false; });

  var S = 256;  // world units of the unit square at zoom 0
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                 "#b07aa1", "#ff9da7", "#9c755f", "#8cd17d", "#499894", "#d37295"];
  var F = D.features, n = D.n, levels = D.levels, nL = levels.length;
  var atlas = D.atlas, G = atlas ? atlas.grids.length : 0;
  var tip = document.getElementById("map-tip");
  var statusEl = document.getElementById("map-status");
  var legend = document.getElementById("map-legend");
  var byId = {};
  for (var i = 0; i < n; i++) byId[F.id[i]] = i;

  var V = Math.max(200, Math.min(host.clientWidth, host.clientHeight) * 0.92);
  var zFit = Math.floor(4 * Math.log(V / S) / Math.LN2) / 4;  // on the 0.25 zoom snap, so levels fall on snapped zooms
  // Relative zoom (0 = whole map fits) at which single features replace clusters.
  var rF = Math.max(nL, Math.ceil(Math.log(28 * Math.sqrt(Math.max(n, 1)) / V) / Math.LN2));
  var state = { mode: "features", highlight: -1, hover: null, pending: 0, painted: false };

  var map = L.map(host, {
    crs: L.CRS.Simple, zoomSnap: 0.25, zoomDelta: 0.5, wheelPxPerZoomLevel: 90,
    minZoom: zFit - 1, maxZoom: zFit + rF + 3, attributionControl: false, zoomControl: false,
    maxBounds: L.latLngBounds([S * 0.6, -S * 0.6], [-S * 1.6, S * 1.6]), maxBoundsViscosity: 0.8
  });
  function ll(x, y) { return L.latLng(-y * S, x * S); }
  function rel() { return map.getZoom() - zFit; }
  function maxRel() { return state.mode === "atlas" ? G + 1 : rF + 3; }

  /* ---- sprite sheets, loaded once each, on first need */
  var sheets = {};
  function sheet(url) {
    var img = sheets[url];
    if (!img) {
      img = sheets[url] = new Image();
      state.pending++;
      img.onload = img.onerror = function () { state.pending--; img.done = true; schedule(); };
      img.src = url;
    }
    return img.done && img.naturalWidth ? img : null;
  }
  function drawThumb(ctx, id, cx, cy, t) {
    var sp = D.sprites, k = byId[id];
    if (!sp.px || k === undefined || !F.thumb[k]) {
      ctx.fillStyle = "#8888"; ctx.fillRect(cx - t / 2, cy - t / 2, t, t); return;
    }
    var j = id % sp.per_sheet, img = sheet(sp.sheets[Math.floor(id / sp.per_sheet)]);
    if (!img) { ctx.fillStyle = "#8884"; ctx.fillRect(cx - t / 2, cy - t / 2, t, t); return; }
    ctx.drawImage(img, (j % sp.columns) * sp.px, Math.floor(j / sp.columns) * sp.px, sp.px, sp.px,
                  cx - t / 2, cy - t / 2, t, t);
  }

  /* ---- the canvas layer */
  var canvas = L.DomUtil.create("canvas", "map-canvas leaflet-zoom-animated");
  map.getPanes().overlayPane.appendChild(canvas);
  var ctx = canvas.getContext("2d"), W = 0, H = 0, dpr = 1, drawnBounds = null, frame = 0;
  var view = { a: 0, b: 0, k: 1 };  // container px = a + x * k, b + y * k
  var drawn = [];  // hit targets of the last frame: {x, y, r, kind, i}

  map.on("zoomanim", function (e) {
    if (!drawnBounds) return;
    var scale = map.getZoomScale(e.zoom), offset = map._latLngBoundsToNewLayerBounds(drawnBounds, e.zoom, e.center).min;
    L.DomUtil.setTransform(canvas, offset, scale);
  });
  function schedule() { if (!frame) frame = window.requestAnimationFrame(function () { frame = 0; draw(); }); }
  map.on("move zoomend resize viewreset", schedule);

  function css(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }
  function label(text, x, y, size, boxes, weight) {
    ctx.font = (weight || "600") + " " + size + "px system-ui, sans-serif";
    var w = ctx.measureText(text).width, h = size + 4;
    var box = [x - w / 2 - 2, y - h / 2, x + w / 2 + 2, y + h / 2];
    for (var q = 0; q < boxes.length; q++) {
      var o = boxes[q];
      if (box[0] < o[2] && box[2] > o[0] && box[1] < o[3] && box[3] > o[1]) return false;
    }
    boxes.push(box);
    ctx.strokeText(text, x, y); ctx.fillText(text, x, y);
    return true;
  }

  function levelOf(r) {
    if (state.mode === "atlas") return Math.max(0, Math.min(G - 1, Math.floor(r + 0.001)));
    if (r >= rF - 0.001) return nL;  // single features
    return Math.max(0, Math.min(nL - 1, Math.floor((r + 0.001) * nL / rF)));
  }

  function draw() {
    var size = map.getSize();
    dpr = window.devicePixelRatio || 1;
    if (W !== size.x || H !== size.y) {
      W = size.x; H = size.y;
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      canvas.style.width = W + "px"; canvas.style.height = H + "px";
    }
    L.DomUtil.setTransform(canvas, map.containerPointToLayerPoint([0, 0]), 1);
    drawnBounds = map.getBounds();
    var p0 = map.latLngToContainerPoint(ll(0, 0)), p1 = map.latLngToContainerPoint(ll(1, 1));
    view.a = p0.x; view.b = p0.y; view.k = p1.x - p0.x;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round"; ctx.lineWidth = 4;
    ctx.strokeStyle = css("--surface", "#fff"); ctx.fillStyle = css("--text", "#111");
    drawn = [];
    var r = rel(), lvl = levelOf(r), names;
    if (state.mode === "atlas") names = drawAtlas(lvl);
    else names = lvl >= nL ? drawFeatures(r) : drawClusters(lvl);
    host.setAttribute("data-level", state.mode === "atlas" ? "atlas-" + lvl : (lvl >= nL ? "features" : String(lvl)));
    legend.textContent = names;
    if (!state.pending && !state.painted) {
      state.painted = true;
      window.ATLAS_MAP_PAINTED = performance.now();
    }
  }

  function inView(px, py, m) { return px > -m && py > -m && px < W + m && py < H + m; }

  function drawClusters(lvl) {
    var top = F.cluster[0] || [], cl = F.cluster[lvl] || [], groups = {}, k;
    for (k = 0; k < n; k++) {
      var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      if (!inView(px, py, 4)) continue;
      var c = top[k] >= 0 ? top[k] % PALETTE.length : -1;
      (groups[c] = groups[c] || []).push(px, py);
    }
    ctx.globalAlpha = 0.55;
    for (var c in groups) {
      ctx.fillStyle = c >= 0 ? PALETTE[c] : "#888";
      var g = groups[c];
      for (var q = 0; q < g.length; q += 2) ctx.fillRect(g[q] - 1.5, g[q + 1] - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    var list = levels[lvl].map(function (c, j) { return j; })
      .sort(function (p, q) { return levels[lvl][q].size - levels[lvl][p].size || p - q; });
    var t = lvl === 0 ? 56 : 44, boxes = [], shown = [];
    ctx.fillStyle = css("--text", "#111");
    list.forEach(function (j) {
      var c = levels[lvl][j], px = view.a + c.x * view.k, py = view.b + c.y * view.k;
      if (!inView(px, py, t)) return;
      var colour = PALETTE[(top[byId[c.rep]] >= 0 ? top[byId[c.rep]] : 0) % PALETTE.length];
      ctx.fillStyle = colour; ctx.fillRect(px - t / 2 - 3, py - t / 2 - 3, t + 6, t + 6);
      drawThumb(ctx, c.rep, px, py, t);
      drawn.push({ x: px, y: py, r: t / 2 + 3, kind: "cluster", i: j, lvl: lvl });
      ctx.fillStyle = css("--text", "#111");
      if (label(c.name, px, py + t / 2 + 14, lvl === 0 ? 15 : 13, boxes) && shown.indexOf(c.name) < 0) shown.push(c.name);
    });
    for (var h = 0; h < drawn.length; h++) boxes.push([drawn[h].x - drawn[h].r, drawn[h].y - drawn[h].r, drawn[h].x + drawn[h].r, drawn[h].y + drawn[h].r]);
    status("Level " + (lvl + 1) + " of " + (nL + 1) + ": " + levels[lvl].length + " clusters");
    return "In view: " + (shown.length ? shown.join(" · ") : "nothing");
  }

  function drawFeatures(r) {
    var t = Math.max(14, Math.min(72, 0.85 * view.k / Math.sqrt(Math.max(n, 1)))), vis = [], k;
    for (k = 0; k < n; k++) {
      var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      if (inView(px, py, t)) vis.push(k);
    }
    var dots = vis.length > 5000;
    vis.forEach(function (k) {
      var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      if (dots) { ctx.fillStyle = "#888"; ctx.fillRect(px - 1.5, py - 1.5, 3, 3); }
      else drawThumb(ctx, F.id[k], px, py, t);
      drawn.push({ x: px, y: py, r: dots ? 4 : t / 2, kind: "feature", i: k });
    });
    var boxes = [], shown = [], finest = levels[nL - 1] || [];
    ctx.fillStyle = css("--text", "#111");
    if (t >= 56 && vis.length <= 400) {
      vis.forEach(function (k) {
        var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
        label(F.label[k], px, py + t / 2 + 9, 11, boxes, "400");
      });
    }
    finest.forEach(function (c) {
      var px = view.a + c.x * view.k, py = view.b + c.y * view.k;
      if (inView(px, py, 0) && label(c.name, px, py, 14, boxes) && shown.indexOf(c.name) < 0) shown.push(c.name);
    });
    status("Single features: " + vis.length + " in view");
    return "In view: " + (shown.length ? shown.join(" · ") : vis.length + " features");
  }

  function drawAtlas(lvl) {
    var g = atlas.grids[lvl], size = g.size, cell = view.k / size, cells = g.cells, avg = 0, k;
    for (k = 0; k < cells.length; k++) avg += cells[k][2];
    avg = avg / Math.max(cells.length, 1);
    var img = sheet(g.sheet), boxes = [], shown = {}, every = Math.max(1, Math.ceil(44 / cell));
    for (k = 0; k < cells.length; k++) {
      var c = cells[k], x0 = view.a + c[0] * cell, y0 = view.b + c[1] * cell;
      if (x0 > W || y0 > H || x0 + cell < 0 || y0 + cell < 0) continue;
      var s = cell * Math.min(1, Math.sqrt(c[2] / avg)), off = (cell - s) / 2;
      if (img) ctx.drawImage(img, (k % g.columns) * g.icon, Math.floor(k / g.columns) * g.icon, g.icon, g.icon,
                             x0 + off, y0 + off, s, s);
      else { ctx.fillStyle = "#8884"; ctx.fillRect(x0 + off, y0 + off, s, s); }
      drawn.push({ x: x0 + cell / 2, y: y0 + cell / 2, r: cell / 2, kind: "cell", i: k, lvl: lvl });
    }
    ctx.fillStyle = css("--text", "#111");
    for (k = 0; k < cells.length; k++) {
      var d = cells[k];
      if (d[0] % every || d[1] % every) continue;
      var cx = view.a + (d[0] + 0.5) * cell, cy = view.b + (d[1] + 0.5) * cell;
      if (inView(cx, cy, 0) && label(D.classes[d[3]], cx, cy + cell / 2 - 8, 11, boxes)) shown[D.classes[d[3]]] = 1;
    }
    status("Activation atlas: " + size + " × " + size + " grid, " + cells.length + " cells");
    return "In view: " + Object.keys(shown).join(" · ");
  }

  function status(text) {
    var extra = state.highlight >= 0 ? " · f/" + F.id[state.highlight] + ": " + F.label[state.highlight] : "";
    statusEl.textContent = text + extra;
  }

  /* ---- hover, click */
  function hit(pt) {
    var best = null, bd = Infinity;
    for (var q = 0; q < drawn.length; q++) {
      var d = drawn[q], dx = Math.abs(pt.x - d.x), dy = Math.abs(pt.y - d.y);
      if (dx <= d.r && dy <= d.r && dx + dy < bd) { bd = dx + dy; best = d; }
    }
    return best;
  }
  function showTip(h, pt) {
    if (!h) { tip.hidden = true; host.style.cursor = ""; return; }
    tip.textContent = "";
    function line(cls, text) { var e = document.createElement("div"); e.className = cls; e.textContent = text; tip.appendChild(e); }
    if (h.kind === "feature") {
      var k = h.i;
      line("tip-code", "f/" + F.id[k]);
      line("tip-label", F.label[k]);
      line("tip-num", "density " + (100 * F.density[k]).toFixed(2) + "% · max " + F.max[k] + (F.top[k] ? " · " + F.top[k] : ""));
    } else if (h.kind === "cluster") {
      var c = levels[h.lvl][h.i];
      line("tip-code", c.name);
      line("tip-num", c.size + " features · level " + (h.lvl + 1) + " · click to zoom in");
    } else {
      var cell = atlas.grids[h.lvl].cells[h.i];
      line("tip-code", D.classes[cell[3]]);
      line("tip-num", cell[2] + " images · " + Math.round(100 * cell[4]) + "% " + D.classes[cell[3]]);
    }
    tip.hidden = false;
    host.style.cursor = "pointer";
    var x = Math.min(pt.x + 14, host.clientWidth - tip.offsetWidth - 4), y = pt.y + 14;
    if (y + tip.offsetHeight > host.clientHeight) y = pt.y - tip.offsetHeight - 10;
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = (host.offsetTop + Math.max(4, y)) + "px";
  }
  map.on("mousemove", function (e) { state.hover = hit(e.containerPoint); showTip(state.hover, e.containerPoint); });
  map.on("mouseout movestart zoomstart", function () { state.hover = null; tip.hidden = true; });
  map.on("click", function (e) {
    var h = hit(e.containerPoint);
    if (!h) return;
    if (h.kind === "feature") window.location.href = D.feature_href.replace("{id}", String(F.id[h.i]));
    else if (h.kind === "cluster") {
      var c = levels[h.lvl][h.i];
      map.setView(ll(c.x, c.y), zFit + (h.lvl + 1) * rF / nL + 0.01);
    } else window.location.href = D.class_hrefs[atlas.grids[h.lvl].cells[h.i][3]];
  });

  /* ---- URL hash: the view, or #f=<id> */
  var applying = false;
  function writeHash() {
    if (applying) return;
    var c = map.getCenter();
    var h = "#m=" + state.mode + "&z=" + rel().toFixed(2) + "&x=" + (c.lng / S).toFixed(4) + "&y=" + (-c.lat / S).toFixed(4);
    if (h === window.location.hash) return;
    try { window.history.replaceState(null, "", h); } catch (err) { window.location.replace(h); }
  }
  function readHash() {
    var q = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("="); if (p[0]) q[p[0]] = decodeURIComponent(p[1] || "");
    });
    return q;
  }
  function applyHash() {
    var q = readHash();
    applying = true;
    setMode(q.m === "atlas" && atlas ? "atlas" : "features", true);
    if (q.f !== undefined && byId[+q.f] !== undefined) {
      var k = byId[+q.f];
      state.highlight = k;
      setMode("features", true);
      map.setView(ll(F.x[k], F.y[k]), zFit + rF + 1, { animate: false });
    } else if (q.z !== undefined && isFinite(+q.z) && isFinite(+q.x) && isFinite(+q.y)) {
      map.setView(ll(+q.x, +q.y), zFit + Math.max(-1, Math.min(maxRel(), +q.z)), { animate: false });
    } else {
      map.setView(ll(0.5, 0.5), zFit, { animate: false });
    }
    applying = false;
    schedule();
  }
  map.on("moveend", writeHash);
  window.addEventListener("hashchange", applyHash);

  /* ---- highlight ring of #f=, drawn on top */
  var baseDraw = draw;
  draw = function () {
    baseDraw();
    if (state.highlight >= 0 && state.mode === "features") {
      var k = state.highlight, px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      var t = levelOf(rel()) >= nL ? Math.max(14, Math.min(72, 0.85 * view.k / Math.sqrt(Math.max(n, 1)))) : 10;
      ctx.strokeStyle = css("--accent", "#d33"); ctx.lineWidth = 3;
      ctx.strokeRect(px - t / 2 - 4, py - t / 2 - 4, t + 8, t + 8);
    }
  };

  /* ---- mode switch and buttons */
  var modeButtons = document.querySelectorAll("[data-map-mode]");
  function setMode(mode, quiet) {
    state.mode = mode;
    Array.prototype.forEach.call(modeButtons, function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-map-mode") === mode ? "true" : "false");
    });
    map.setMaxZoom(zFit + maxRel());
    if (!quiet) { writeHash(); schedule(); }
  }
  Array.prototype.forEach.call(modeButtons, function (b) {
    b.addEventListener("click", function () { setMode(b.getAttribute("data-map-mode")); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-map-zoom]"), function (b) {
    b.addEventListener("click", function () {
      var what = b.getAttribute("data-map-zoom");
      if (what === "reset") map.setView(ll(0.5, 0.5), zFit);
      else if (what === "in") map.zoomIn(1); else map.zoomOut(1);
    });
  });
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", schedule);
  }

  window.atlasMap = { map: map, state: state, zFit: zFit, featureZoom: zFit + rF, S: S,
                      levelOf: function () { return levelOf(rel()); } };
  applyHash();
})();
