/* atlasgen zoomable map: the feature map and the activation atlas of one layer.
 *
 * Leaflet (static/vendor/leaflet, BSD-2) handles pan and zoom (wheel and pinch towards the cursor,
 * drag, keyboard) in a simple CRS; one canvas layer draws what is in view from window.ATLAS_MAP
 * (map/data.js, a classic script, so file:// works) and from sprite sheets loaded as <img>.
 * Semantic levels of detail: zoomed out, each cluster of the current hierarchy level is one
 * representative thumbnail and its name; zoomed in past the last level, every feature is drawn
 * with its id and label where they do not collide. The map opens fitted to the data; the zoom
 * buttons zoom about the centre of the data in view, and a zoom or pan that would leave nothing
 * in view is pulled back to the nearest data. The URL fragment keeps the view and the selection
 * (#m=features&l=2&z=..&x=..&y=..&f=<id>); #f=<id> alone centres on a feature. */
(function () {
  "use strict";
  var D = window.ATLAS_MAP, L = window.L;
  var host = document.getElementById("map-view");
  if (!D || !L || !host) return;
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (n) { n.hidden = false; });

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (ch) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[ch]; });
  }
  // The cluster lists below the map: members drawn from the data when a cluster is first opened.
  Array.prototype.forEach.call(document.querySelectorAll("details[data-cluster]"), function (box) {
    box.addEventListener("toggle", function () {
      if (!box.open || box.getAttribute("data-filled")) return;
      box.setAttribute("data-filled", "1");
      var c = +box.getAttribute("data-cluster"), col = D.features.cluster[0] || [], html = "";
      for (var j = 0; j < D.n; j++) {
        if ((col.length ? col[j] : -1) !== c) continue;
        var id = D.features.id[j];
        html += '<li><a href="' + D.feature_href.replace("{id}", String(id)) + '">f/' + id + "</a> " +
          esc(D.features.label[j] || "") + "</li>";
      }
      box.querySelector(".cluster-list").innerHTML = html;
      var note = box.querySelector(".cluster-note");
      if (note) note.hidden = true;
    });
  });

  var S = 256;  // world units of the unit square at zoom 0
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                 "#b07aa1", "#ff9da7", "#9c755f", "#8cd17d", "#499894", "#d37295"];
  var F = D.features, n = D.n, levels = D.levels, nL = levels.length;
  var atlas = D.atlas, G = atlas ? atlas.grids.length : 0;
  var tip = document.getElementById("map-tip");
  var statusEl = document.getElementById("map-status");
  var legend = document.getElementById("map-legend");
  var selectedEl = document.getElementById("map-selected");
  var byId = {}, i;
  for (i = 0; i < n; i++) byId[F.id[i]] = i;

  // The data's extent (the features of the map; the atlas fills the unit square).
  var ext = { x0: 0, y0: 0, x1: 1, y1: 1 };
  if (n) {
    ext = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    for (i = 0; i < n; i++) {
      ext.x0 = Math.min(ext.x0, F.x[i]); ext.x1 = Math.max(ext.x1, F.x[i]);
      ext.y0 = Math.min(ext.y0, F.y[i]); ext.y1 = Math.max(ext.y1, F.y[i]);
    }
  }
  var spanX = Math.max(ext.x1 - ext.x0, 0.02), spanY = Math.max(ext.y1 - ext.y0, 0.02);
  var spacing = Math.sqrt(spanX * spanY / Math.max(n, 1));  // typical distance between features, in units

  var state = { mode: "features", highlight: -1, hover: null, pending: 0, painted: false };
  var map = L.map(host, {
    crs: L.CRS.Simple, zoomSnap: 0.25, zoomDelta: 0.5, wheelPxPerZoomLevel: 90,
    attributionControl: false, zoomControl: false, doubleClickZoom: false
  });
  function ll(x, y) { return L.latLng(-y * S, x * S); }

  // Fitted zoom of each mode: the data (feature map) or the unit square (atlas) fills the frame.
  var zFitOf = {}, centreOf = {}, rF = nL;
  function fitZooms() {
    var size = map.getSize(), w = Math.max(size.x, 160) * 0.9, h = Math.max(size.y, 160) * 0.9;
    zFitOf.features = Math.floor(4 * Math.log(Math.min(w / (spanX * S), h / (spanY * S))) / Math.LN2) / 4;
    zFitOf.atlas = Math.floor(4 * Math.log(Math.min(w, h) / S) / Math.LN2) / 4;
    centreOf.features = [(ext.x0 + ext.x1) / 2, (ext.y0 + ext.y1) / 2];
    centreOf.atlas = [0.5, 0.5];
    var k0 = S * Math.pow(2, zFitOf.features);  // px per unit when fitted
    // Relative zoom at which single features replace clusters: tiles of about 28 px.
    rF = Math.max(nL, Math.ceil(Math.log(28 / (0.85 * k0 * spacing)) / Math.LN2));
  }
  fitZooms();
  function zFit() { return zFitOf[state.mode]; }
  function rel() { return map.getZoom() - zFit(); }
  // The atlas stops at its finest grid (half a zoom level into it, no enlargement past that).
  function maxRel() { return state.mode === "atlas" ? Math.max(0, G - 0.5) : rF + 2; }
  function limits() { map.setMinZoom(zFit() - 1); map.setMaxZoom(zFit() + maxRel()); }
  limits();

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
  function collides(box, boxes) {
    for (var q = 0; q < boxes.length; q++) {
      var o = boxes[q];
      if (box[0] < o[2] && box[2] > o[0] && box[1] < o[3] && box[3] > o[1]) return true;
    }
    return false;
  }
  function label(text, x, y, size, boxes, weight) {
    ctx.font = (weight || "600") + " " + size + "px system-ui, sans-serif";
    var w = ctx.measureText(text).width, h = size + 4;
    var box = [x - w / 2 - 2, y - h / 2, x + w / 2 + 2, y + h / 2];
    if (box[0] < 0 || box[2] > W || box[1] < 0 || box[3] > H || collides(box, boxes)) return false;
    boxes.push(box);
    ctx.strokeText(text, x, y); ctx.fillText(text, x, y);
    return true;
  }
  function updateView() {
    var p0 = map.latLngToContainerPoint(ll(0, 0)), p1 = map.latLngToContainerPoint(ll(1, 1));
    view.a = p0.x; view.b = p0.y; view.k = p1.x - p0.x;
  }

  function levelOf(r) {
    if (state.mode === "atlas") return Math.max(0, Math.min(G - 1, Math.floor(r + 0.001)));
    if (r >= rF - 0.001) return nL;  // single features
    return Math.max(0, Math.min(nL - 1, Math.floor((r + 0.001) * nL / rF)));
  }
  function levelName(lvl) { return state.mode === "atlas" ? "atlas-" + lvl : (lvl >= nL ? "features" : String(lvl)); }
  function tileSize() { return Math.max(14, Math.min(72, 0.85 * view.k * spacing)); }

  function draw() {
    var size = map.getSize();
    dpr = window.devicePixelRatio || 1;
    W = size.x; H = size.y;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      canvas.style.width = W + "px"; canvas.style.height = H + "px";
    }
    L.DomUtil.setTransform(canvas, map.containerPointToLayerPoint([0, 0]), 1);
    drawnBounds = map.getBounds();
    updateView();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round"; ctx.lineWidth = 4;
    ctx.strokeStyle = css("--surface", "#fff"); ctx.fillStyle = css("--text", "#111");
    drawn = [];
    var r = rel(), lvl = levelOf(r), names;
    if (state.mode === "atlas") names = drawAtlas(lvl);
    else names = lvl >= nL ? drawFeatures() : drawClusters(lvl);
    if (state.highlight >= 0 && state.mode === "features") {
      var k = state.highlight, px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      var t = lvl >= nL ? tileSize() : 10;
      ctx.strokeStyle = css("--accent", "#d33"); ctx.lineWidth = 3;
      ctx.strokeRect(px - t / 2 - 4, py - t / 2 - 4, t + 8, t + 8);
    }
    host.setAttribute("data-level", levelName(lvl));
    legend.textContent = names;
    if (!state.pending && !state.painted) {
      state.painted = true;
      window.ATLAS_MAP_PAINTED = performance.now();
    }
  }

  function inView(px, py, m) { return px > -m && py > -m && px < W + m && py < H + m; }
  function textColour() { return css("--text", "#111"); }

  function drawClusters(lvl) {
    var top = F.cluster[0] || [], groups = {}, k;
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
    var t = lvl === 0 ? 56 : 44, boxes = [], shown = [], tiles = [];
    list.forEach(function (j) {
      var c = levels[lvl][j], px = view.a + c.x * view.k, py = view.b + c.y * view.k;
      if (!inView(px, py, t)) return;
      var box = [px - t / 2 - 3, py - t / 2 - 3, px + t / 2 + 3, py + t / 2 + 3];
      if (collides(box, tiles)) return;  // a smaller cluster under a larger one's tile: zoom in to see it
      tiles.push(box);
      var colour = PALETTE[(top[byId[c.rep]] >= 0 ? top[byId[c.rep]] : 0) % PALETTE.length];
      ctx.fillStyle = colour; ctx.fillRect(box[0], box[1], t + 6, t + 6);
      drawThumb(ctx, c.rep, px, py, t);
      drawn.push({ x: px, y: py, r: t / 2 + 3, kind: "cluster", i: j, lvl: lvl });
    });
    boxes = tiles.slice();
    ctx.fillStyle = textColour();
    drawn.forEach(function (d) {
      var c = levels[lvl][d.i];
      if (label(c.name, d.x, d.y + t / 2 + 14, lvl === 0 ? 15 : 13, boxes) && shown.indexOf(c.name) < 0) shown.push(c.name);
    });
    status("Level " + (lvl + 1) + " of " + (nL + 1) + ": " + levels[lvl].length + " clusters");
    return "In view: " + (shown.length ? shown.join(" · ") : "nothing");
  }

  function visibleFeatures(margin) {
    var vis = [];
    for (var k = 0; k < n; k++) {
      var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      if (inView(px, py, margin)) vis.push(k);
    }
    return vis;
  }

  function drawFeatures() {
    var t = tileSize(), vis = visibleFeatures(t / 2), dots = vis.length > 5000;
    var cx = W / 2, cy = H / 2;
    // Nearest the centre last, so it is drawn on top and labelled first.
    vis.sort(function (p, q) {
      var dp = Math.pow(view.a + F.x[p] * view.k - cx, 2) + Math.pow(view.b + F.y[p] * view.k - cy, 2);
      var dq = Math.pow(view.a + F.x[q] * view.k - cx, 2) + Math.pow(view.b + F.y[q] * view.k - cy, 2);
      return dq - dp || p - q;
    });
    var tiles = [];
    vis.forEach(function (k) {
      var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
      if (dots) { ctx.fillStyle = "#888"; ctx.fillRect(px - 1.5, py - 1.5, 3, 3); }
      else drawThumb(ctx, F.id[k], px, py, t);
      drawn.push({ x: px, y: py, r: dots ? 4 : t / 2, kind: "feature", i: k });
      tiles.push([px - t / 2, py - t / 2, px + t / 2, py + t / 2]);
    });
    var boxes = [], shown = 0, names = [];
    ctx.fillStyle = textColour();
    if (!dots && t >= 30 && vis.length <= 800) {
      // Labels: id and label under each tile, only where they overlap no tile but their own and no
      // other label; the ones that would collide are hidden (hover shows them).
      for (var q = vis.length - 1; q >= 0; q--) {
        var k = vis[q], px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
        var text = "f/" + F.id[k] + (F.label[k] ? " " + F.label[k] : "");
        if (text.length > 28) text = text.slice(0, 27) + "…";
        var others = tiles.filter(function (b) { return !(b[0] === px - t / 2 && b[1] === py - t / 2); });
        ctx.font = "400 11px system-ui, sans-serif";
        var w = ctx.measureText(text).width, box = [px - w / 2 - 2, py + t / 2 + 1, px + w / 2 + 2, py + t / 2 + 15];
        if (box[0] < 0 || box[2] > W || box[3] > H || collides(box, boxes) || collides(box, others)) continue;
        boxes.push(box);
        ctx.strokeText(text, px, py + t / 2 + 8); ctx.fillText(text, px, py + t / 2 + 8);
        shown++;
      }
    } else {
      var finest = levels[nL - 1] || [];
      boxes = [];
      finest.forEach(function (c) {
        var px = view.a + c.x * view.k, py = view.b + c.y * view.k;
        if (inView(px, py, 0) && label(c.name, px, py, 14, boxes) && names.indexOf(c.name) < 0) names.push(c.name);
      });
    }
    status("Single features: " + vis.length + " in view" + (shown ? ", " + shown + " labelled" : ""));
    return "In view: " + (names.length ? names.join(" · ") : vis.length + " features");
  }

  function drawAtlas(lvl) {
    var g = atlas.grids[lvl], size = g.size, cell = view.k / size, cells = g.cells, avg = 0, k;
    for (k = 0; k < cells.length; k++) avg += cells[k][2];
    avg = avg / Math.max(cells.length, 1);
    var img = sheet(g.sheet), boxes = [], shown = {}, every = Math.max(1, Math.ceil(44 / cell));
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    ctx.save();
    ctx.imageSmoothingQuality = "high";
    if ("filter" in ctx) ctx.filter = "contrast(1.45) saturate(1.35)";  // the icons are low-contrast optimised images
    for (k = 0; k < cells.length; k++) {
      var c = cells[k], x0 = view.a + c[0] * cell, y0 = view.b + c[1] * cell;
      if (x0 > W || y0 > H || x0 + cell < 0 || y0 + cell < 0) continue;
      // Sparse cells smaller (as in the Activation Atlas), but never below 70 % of the cell.
      var s = (cell - 1) * Math.max(0.7, Math.min(1, Math.sqrt(c[2] / avg))), off = (cell - s) / 2;
      if (img) ctx.drawImage(img, (k % g.columns) * g.icon, Math.floor(k / g.columns) * g.icon, g.icon, g.icon,
                             x0 + off, y0 + off, s, s);
      else { ctx.fillStyle = "#8884"; ctx.fillRect(x0 + off, y0 + off, s, s); }
      drawn.push({ x: x0 + cell / 2, y: y0 + cell / 2, r: cell / 2, kind: "cell", i: k, lvl: lvl });
    }
    ctx.restore();
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round"; ctx.lineWidth = 4;
    ctx.strokeStyle = dark ? "#000" : "#fff";
    ctx.fillStyle = dark ? "#fff" : "#111";
    for (k = 0; k < cells.length; k++) {
      var d = cells[k];
      if (d[0] % every || d[1] % every) continue;
      var cx = view.a + (d[0] + 0.5) * cell, cy = view.b + (d[1] + 0.5) * cell;
      if (inView(cx, cy, 0) && label(D.classes[d[3]], cx, cy + cell / 2 - 8, 12, boxes)) shown[D.classes[d[3]]] = 1;
    }
    status("Activation atlas: " + size + " × " + size + " grid" + (lvl === G - 1 ? " (finest)" : "") + ", " + cells.length + " cells");
    return "In view: " + Object.keys(shown).join(" · ");
  }

  function status(text) {
    var extra = state.highlight >= 0 ? " · f/" + F.id[state.highlight] + ": " + F.label[state.highlight] : "";
    statusEl.textContent = text + extra;
  }

  /* ---- keep data in view: after any zoom or pan, if nothing is in view, pull the nearest data in */
  function nearestData() {
    var c = map.getSize().divideBy(2), best = null, bd = Infinity, k, px, py, d;
    if (state.mode === "atlas") {
      var g = atlas.grids[levelOf(rel())], cell = view.k / g.size;
      for (k = 0; k < g.cells.length; k++) {
        px = view.a + (g.cells[k][0] + 0.5) * cell; py = view.b + (g.cells[k][1] + 0.5) * cell;
        d = (px - c.x) * (px - c.x) + (py - c.y) * (py - c.y);
        if (d < bd) { bd = d; best = [px, py]; }
      }
    } else {
      for (k = 0; k < n; k++) {
        px = view.a + F.x[k] * view.k; py = view.b + F.y[k] * view.k;
        d = (px - c.x) * (px - c.x) + (py - c.y) * (py - c.y);
        if (d < bd) { bd = d; best = [px, py]; }
      }
    }
    return best;
  }
  function anyInView() {
    updateView();
    var size = map.getSize();
    W = W || size.x; H = H || size.y;
    var p = nearestData();
    return !p || (p[0] >= 0 && p[1] >= 0 && p[0] <= size.x && p[1] <= size.y);
  }
  function keepDataInView() {
    if (anyInView()) return;
    var size = map.getSize(), p = nearestData(), m = Math.min(size.x, size.y) * 0.2;
    var dx = p[0] < m ? p[0] - m : (p[0] > size.x - m ? p[0] - (size.x - m) : 0);
    var dy = p[1] < m ? p[1] - m : (p[1] > size.y - m ? p[1] - (size.y - m) : 0);
    map.panBy([dx, dy], { animate: false });
  }
  map.on("zoomend", keepDataInView);
  map.on("dragend", function () { window.setTimeout(keepDataInView, 0); });

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
    function line(cls, text) { var e = document.createElement("div"); e.className = cls; e.textContent = text; tip.appendChild(e); return e; }
    if (h.kind === "feature") {
      var k = h.i;
      line("tip-code", "f/" + F.id[k]);
      line("tip-label", F.label[k]);
      line("tip-num", "density " + (100 * F.density[k]).toFixed(2) + "% · max " + F.max[k] + (F.top[k] ? " · " + F.top[k] : ""));
      line("tip-num", state.highlight === k ? "click to open its page" : "click to select");
    } else if (h.kind === "cluster") {
      var c = levels[h.lvl][h.i];
      line("tip-code", c.name);
      line("tip-num", c.size + " features · level " + (h.lvl + 1) + " · click to zoom in");
    } else {
      var cell = atlas.grids[h.lvl].cells[h.i];
      line("tip-code", D.classes[cell[3]]);
      line("tip-num", cell[2] + " images in this cell");
      var top = cell[5] || [[cell[3], cell[4]]], ul = document.createElement("ul");
      ul.className = "tip-classes";
      top.forEach(function (p) {
        var li = document.createElement("li");
        li.textContent = Math.round(100 * p[1]) + "% " + D.classes[p[0]];
        ul.appendChild(li);
      });
      tip.appendChild(ul);
      var shown = cell[6] || [];
      if (shown.length && atlas.images) {
        var row = document.createElement("div");
        row.className = "tip-images";
        shown.forEach(function (j) {
          var im = document.createElement("img");
          im.src = atlas.images[j]; im.alt = ""; im.width = 56; im.height = 56;
          row.appendChild(im);
        });
        tip.appendChild(row);
        line("tip-num", "typical images of the cell");
      }
    }
    tip.hidden = false;
    host.style.cursor = "pointer";
    var x = Math.min(pt.x + 14, host.clientWidth - tip.offsetWidth - 4), y = pt.y + 14;
    if (y + tip.offsetHeight > host.clientHeight) y = pt.y - tip.offsetHeight - 10;
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = (host.offsetTop + Math.max(4, y)) + "px";
  }
  map.on("mousemove", function (e) { state.hover = hit(e.containerPoint); showTip(state.hover, e.containerPoint); });
  map.on("mouseout movestart zoomstart", function () { state.hover = null; tip.hidden = true; });

  function select(k) {
    state.highlight = k;
    if (selectedEl) {
      if (k < 0) { selectedEl.hidden = true; selectedEl.textContent = ""; }
      else {
        selectedEl.innerHTML = 'Selected: <a href="' + D.feature_href.replace("{id}", String(F.id[k])) + '">f/' +
          F.id[k] + "</a> " + esc(F.label[k] || "") + ' <button type="button" data-map-unselect>clear</button>';
        selectedEl.hidden = false;
        selectedEl.querySelector("[data-map-unselect]").addEventListener("click", function () { select(-1); });
      }
    }
    writeHash(); schedule();
  }
  map.on("click", function (e) {
    var h = hit(e.containerPoint);
    if (!h) return;
    if (h.kind === "feature") {
      if (state.highlight === h.i) window.location.href = D.feature_href.replace("{id}", String(F.id[h.i]));
      else select(h.i);
    } else if (h.kind === "cluster") {
      var c = levels[h.lvl][h.i];
      map.setView(ll(c.x, c.y), zFit() + (h.lvl + 1) * rF / nL + 0.01);
    } else window.location.href = D.class_hrefs[atlas.grids[h.lvl].cells[h.i][3]];
  });

  /* ---- URL fragment: mode, level, zoom, centre, selected feature */
  var applying = false;
  function writeHash() {
    if (applying) return;
    var c = map.getCenter(), lvl = levelOf(rel());
    var h = "#m=" + state.mode + "&l=" + levelName(lvl) + "&z=" + rel().toFixed(2) +
      "&x=" + (c.lng / S).toFixed(4) + "&y=" + (-c.lat / S).toFixed(4) +
      (state.highlight >= 0 && state.mode === "features" ? "&f=" + F.id[state.highlight] : "");
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
  function fitView() { map.setView(ll(centreOf[state.mode][0], centreOf[state.mode][1]), zFit(), { animate: false }); }
  function applyHash() {
    var q = readHash();
    applying = true;
    setMode(q.m === "atlas" && atlas ? "atlas" : "features", true);
    var k = q.f !== undefined && byId[+q.f] !== undefined ? byId[+q.f] : -1;
    var hasView = q.z !== undefined && isFinite(+q.z) && isFinite(+q.x) && isFinite(+q.y) && q.z !== "";
    if (hasView) {
      map.setView(ll(+q.x, +q.y), zFit() + Math.max(-1, Math.min(maxRel(), +q.z)), { animate: false });
    } else if (k >= 0) {
      setMode("features", true);
      map.setView(ll(F.x[k], F.y[k]), zFit() + rF + 1, { animate: false });
    } else {
      fitView();
    }
    applying = false;
    select(k);
  }
  map.on("moveend", writeHash);
  window.addEventListener("hashchange", applyHash);

  /* ---- mode switch and buttons */
  var modeButtons = document.querySelectorAll("[data-map-mode]");
  function setMode(mode, quiet) {
    var changed = mode !== state.mode;
    state.mode = mode;
    Array.prototype.forEach.call(modeButtons, function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-map-mode") === mode ? "true" : "false");
    });
    limits();
    if (!quiet) {
      if (changed) fitView();
      writeHash(); schedule();
    }
  }
  Array.prototype.forEach.call(modeButtons, function (b) {
    b.addEventListener("click", function () { setMode(b.getAttribute("data-map-mode")); });
  });
  // Buttons zoom about the centre of the data in view (never into empty space between clusters).
  function zoomStep(delta) {
    updateView();
    var size = map.getSize(), sx = 0, sy = 0, m = 0, k;
    if (state.mode === "features") {
      for (k = 0; k < n; k++) {
        var px = view.a + F.x[k] * view.k, py = view.b + F.y[k] * view.k;
        if (px >= 0 && py >= 0 && px <= size.x && py <= size.y) { sx += px; sy += py; m++; }
      }
    }
    var z = Math.max(map.getMinZoom(), Math.min(map.getMaxZoom(), map.getZoom() + delta));
    if (m && delta > 0) map.setZoomAround(L.point(sx / m, sy / m), z);
    else map.setZoom(z);
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-map-zoom]"), function (b) {
    b.addEventListener("click", function () {
      var what = b.getAttribute("data-map-zoom");
      if (what === "reset") fitView();
      else zoomStep(what === "in" ? 0.5 : -0.5);
    });
  });
  map.on("resize", function () { fitZooms(); limits(); });
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    if (mq.addEventListener) mq.addEventListener("change", schedule);
  }

  window.atlasMap = {
    map: map, state: state, S: S, extent: ext,
    zFit: function () { return zFit(); }, featureZoom: function () { return zFitOf.features + rF; },
    levelOf: function () { return levelOf(rel()); },
    featuresInView: function () { updateView(); var s = map.getSize(); W = s.x; H = s.y; return visibleFeatures(0).length; },
    zoomStep: zoomStep,
    drawn: function () { return drawn.slice(); }
  };
  applyHash();
})();
