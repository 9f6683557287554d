/* atlasgen page behaviour. A classic script (no modules, no fetch) so every
 * page works from file:// as well as over HTTP. Each part starts only when its
 * elements are on the page; without JavaScript the pages stay fully readable. */
(function () {
  "use strict";

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode, file:// quirks */ }
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* ---- previous / next unit with the arrow keys */
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var t = event.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(t.tagName))) return;
    var rel = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    if (!rel) return;
    var link = document.querySelector('a[rel~="' + rel + '"]');
    if (!link) return;
    event.preventDefault();
    window.location.href = link.href;
  });

  /* ---- heat-map toggle on example grids (visible by default, remembered) */
  Array.prototype.forEach.call(document.querySelectorAll("[data-heat-toggle]"), function (button) {
    var list = document.getElementById(button.getAttribute("data-heat-toggle"));
    if (!list) return;
    function apply(on) {
      list.classList.toggle("heat-on", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = on ? "Heat-maps on" : "Heat-maps off";
    }
    apply(storageGet("atlas.heatmaps") !== "off");
    button.hidden = false;
    button.addEventListener("click", function () {
      var on = !list.classList.contains("heat-on");
      apply(on);
      storageSet("atlas.heatmaps", on ? "on" : "off");
    });
  });

  /* ---- the layer page's unit grids (cards.js -> window.ATLAS_CARDS; atlasgen/site/grid.py).
   * Only the cards in view are in the DOM: the grid's padding stands for the rows above and below,
   * so the page scrolls as if every card were there. Sorting and filtering work on index arrays. */
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function VirtualGrid(grid, data, tools) {
    var n = data.n, cols = data.columns, self = this;
    var pixelated = grid.getAttribute("data-px") === "1";
    var flagCols = data.flags.map(function (f) { return cols[f.key]; });
    var hay = null, sorted = null, shown = null, sortKey = "id", query = "", flag = "", cls = "", tag = "";
    var tagIndex = (data.choices && data.choices.tags || []).indexOf.bind(data.choices ? data.choices.tags : []);
    var metrics = null, drawn = [-1, -1], pending = false;
    var status = tools ? tools.querySelector(".grid-status") : null;
    var BUFFER_ROWS = 4;

    function card(i) {
      var flags = "", badges = [], k;
      for (k = 0; k < data.flags.length; k++) {
        if (flagCols[k][i]) {
          flags += " flag-" + data.flags[k].key;
          if (data.flags[k].badge) badges.push(esc(data.flags[k].title));
        }
      }
      var dead = cols.dead && cols.dead[i];
      var html = '<li class="card' + (dead ? " dead" : "") + flags + '" data-id="' + i + '"><a href="' +
        esc(data.href.replace("{id}", i)) + '">';
      if (cols.thumb[i]) {
        html += '<img class="thumb' + (pixelated ? " px" : "") + '" src="' + esc(data.thumb.replace("{id}", i).replace("{file}", data.thumbs[cols.thumb[i] - 1])) +
          '" alt="' + (flags.indexOf(" flag-vis_failed") >= 0 ? "visualisation failed" : "") +
          '" width="120" height="120">';
      } else {
        html += '<span class="thumb none" role="img" aria-label="no visualisation">no vis</span>';
      }
      html += "<p><b>" + data.kind + "/" + i + "</b>";  // the text as cards.py writes it
      if (cols.label[i]) html += "<span>" + esc(cols.label[i]) + "</span>";
      else if (cols.top[i]) html += '<span class="muted">' + esc(cols.top[i]) + "</span>";
      else html += "<span></span>";
      var meta = dead ? "never fires" : esc(cols.meta[i]);
      for (k = 0; k < data.shown.length; k++) {
        var v = cols[data.shown[k].key][i];
        if (v !== null && v !== undefined && v !== "") meta += " · " + esc(data.shown[k].title) + " " + esc(v);
      }
      html += "<small>" + meta + "</small>";
      if (badges.length) html += "<em>" + badges.join(", ") + "</em>";
      return html + "</p></a></li>";
    }

    function order(key) {
      var ids = new Array(n), i;
      for (i = 0; i < n; i++) ids[i] = i;
      if (key === "id") return ids;
      var spec = data.sorts.filter(function (s) { return s.key === key; })[0];
      var col = cols[key], sign = spec && spec.order === "asc" ? 1 : -1;
      ids.sort(function (a, b) {
        var x = col[a], y = col[b];
        if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1; // missing last
        if (y === null || y === undefined) return -1;
        return (sign * (x - y)) || (a - b);
      });
      return ids;
    }
    function matches(i, words, flagCol, want, c, t) {
      if (flagCol && !flagCol[i] !== !want) return false;
      if (c >= 0 && cols.cls[i] !== c) return false;
      if (t >= 0 && !(cols.tags && cols.tags[i].indexOf(t) >= 0)) return false;
      for (var w = 0; w < words.length; w++) if (hay[i].indexOf(words[w]) < 0) return false;
      return true;
    }
    function select() {
      var words = query.toLowerCase().split(/\s+/).filter(Boolean);
      var flagCol = flag ? cols[flag.slice(1)] : null, want = flag.charAt(0) === "+";
      var c = cls === "" ? -1 : +cls, t = tag === "" ? -1 : tagIndex(tag);
      if (tag !== "" && t < 0) t = -2;  // a tag this grid does not have: nothing matches
      if (!words.length && !flagCol && c < 0 && t === -1) { shown = sorted; return; }
      if (words.length && !hay) {
        hay = new Array(n);
        for (var i = 0; i < n; i++) {
          var h = data.kind + "/" + i + " " + i;
          for (var s = 0; s < data.search.length; s++) h += " " + (cols[data.search[s]][i] || "");
          hay[i] = h.toLowerCase();
        }
      }
      shown = sorted.filter(function (i) { return matches(i, words, flagCol, want, c, t); });
    }
    function measure() {
      var style = window.getComputedStyle(grid);
      var tracks = style.gridTemplateColumns.split(" ").filter(Boolean).length || 1;
      var gap = parseFloat(style.rowGap) || 0;
      var first = grid.firstElementChild;
      var height = first ? first.getBoundingClientRect().height : 0;
      if (!height) return null;
      return { cols: tracks, row: height + gap };
    }
    function draw(force) {
      pending = false;
      if (!metrics) {
        grid.style.paddingTop = grid.style.paddingBottom = "";
        grid.innerHTML = shown.length ? card(shown[0]) : "";
        metrics = measure();
        drawn = [-1, -1];
        if (!metrics) return;
      }
      var rows = Math.ceil(shown.length / metrics.cols);
      var top = grid.getBoundingClientRect().top, view = window.innerHeight || 800;
      var screenRows = Math.ceil(view / metrics.row);
      var a = Math.max(0, Math.min(rows, Math.floor(-top / metrics.row) - BUFFER_ROWS));
      var b = Math.max(Math.min(rows, a + screenRows + 2 * BUFFER_ROWS),
                       Math.min(rows, Math.ceil((view - top) / metrics.row) + BUFFER_ROWS));
      if (!force && a === drawn[0] && b === drawn[1]) return;
      drawn = [a, b];
      var html = "", end = Math.min(shown.length, b * metrics.cols);
      for (var k = a * metrics.cols; k < end; k++) html += card(shown[k]);
      grid.style.paddingTop = (a * metrics.row) + "px";
      grid.style.paddingBottom = (Math.max(0, rows - b) * metrics.row) + "px";
      grid.innerHTML = html;
    }
    function schedule() {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { draw(false); });
    }
    function report() {
      if (!status) return;
      var total = n.toLocaleString("en");
      status.textContent = shown.length === n ? total + " " + data.kind_name + "s" :
        shown.length.toLocaleString("en") + " of " + total + " " + data.kind_name + "s";
    }
    this.sort = function (key) { sortKey = key; sorted = order(key); select(); report(); draw(true); };
    this.filter = function (text, flagValue, classValue, tagValue) {
      query = text || ""; flag = flagValue || ""; cls = classValue || ""; tag = tagValue || "";
      select(); report(); draw(true);
    };
    this.state = function () { return { sort: sortKey, q: query, flag: flag, "class": cls, tag: tag }; };
    this.ids = function () { return shown.slice(); };
    sorted = order(sortKey);
    shown = sorted;
    draw(true);
    report();
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", function () { metrics = null; draw(true); });
    grid.setAttribute("data-virtual", "1");
    if (tools) {
      var name = tools.getAttribute("data-grid-tools");
      var buttons = tools.querySelectorAll("button[data-sort]");
      var input = tools.querySelector("[data-grid-filter]"), menu = tools.querySelector("[data-grid-flag]");
      var classMenu = tools.querySelector("[data-grid-class]"), tagMenu = tools.querySelector("[data-grid-tag]");
      var link = tools.querySelector("[data-grid-link]");
      var pressSort = function (key) {
        Array.prototype.forEach.call(buttons, function (o) {
          o.setAttribute("aria-pressed", o.getAttribute("data-sort") === key ? "true" : "false");
        });
      };
      var remember = function () { gridState(name, self.state(), link); };
      var refilter = function () {
        self.filter(input ? input.value.trim() : "", menu ? menu.value : "", classMenu ? classMenu.value : "",
                    tagMenu ? tagMenu.value : "");
        remember();
      };
      Array.prototype.forEach.call(buttons, function (b) {
        b.addEventListener("click", function () {
          self.sort(b.getAttribute("data-sort"));
          pressSort(b.getAttribute("data-sort"));
          remember();
        });
      });
      if (input) input.addEventListener("input", refilter);
      [menu, classMenu, tagMenu].forEach(function (m) { if (m) m.addEventListener("change", refilter); });
      // The view in the URL fragment (a shared link), then what the browser restored into the controls.
      var saved = gridStateFromHash(name), setMenu = function (m, v) {
        if (m && v !== undefined && Array.prototype.some.call(m.options, function (o) { return o.value === v; })) m.value = v;
      };
      if (input && saved.q !== undefined) input.value = saved.q;
      setMenu(menu, saved.flag); setMenu(classMenu, saved["class"]); setMenu(tagMenu, saved.tag);
      if (saved.sort && Array.prototype.some.call(buttons, function (b) { return b.getAttribute("data-sort") === saved.sort; })) {
        self.sort(saved.sort); pressSort(saved.sort);
      }
      if ((input && input.value) || (menu && menu.value) || (classMenu && classMenu.value) || (tagMenu && tagMenu.value)) refilter();
      else if (saved.sort) remember();
      tools.hidden = false;
      if (link) link.hidden = false;
    }
  }
  /* The grids' views in the URL fragment: "#features.sort=density&features.flag=%2Bdense&neurons.q=red".
   * Keys of other grids and other fragments are kept; defaults (sort by id, no filter) are left out. */
  function parseHash() {
    var out = [];
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var eq = part.indexOf("=");
      try {
        out.push([decodeURIComponent(eq < 0 ? part : part.slice(0, eq)), eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1))]);
      } catch (e) { /* a malformed fragment: ignored */ }
    });
    return out;
  }
  function gridStateFromHash(name) {
    var state = {};
    parseHash().forEach(function (kv) { if (kv[0].indexOf(name + ".") === 0) state[kv[0].slice(name.length + 1)] = kv[1]; });
    return state;
  }
  function gridState(name, state, link) {
    var parts = parseHash().filter(function (kv) { return kv[0].indexOf(name + ".") !== 0; }).map(function (kv) {
      return encodeURIComponent(kv[0]) + (kv[1] !== "" ? "=" + encodeURIComponent(kv[1]) : "");
    });
    ["sort", "flag", "class", "tag", "q"].forEach(function (key) {
      var v = state[key];
      if (v === undefined || v === "" || (key === "sort" && v === "id")) return;
      parts.push(encodeURIComponent(name + "." + key) + "=" + encodeURIComponent(v));
    });
    var hash = parts.length ? "#" + parts.join("&") : "";
    var url = window.location.href.replace(/#.*$/, "") + hash;
    try { window.history.replaceState(null, "", url); } catch (e) { if (hash) window.location.hash = hash; }
    if (link) link.href = url;
  }
  window.atlasGrids = {};
  if (window.ATLAS_CARDS) {
    Array.prototype.forEach.call(document.querySelectorAll("ol[data-cards]"), function (grid) {
      var name = grid.getAttribute("data-cards"), data = window.ATLAS_CARDS.grids[name];
      if (!data) return;
      var tools = document.querySelector('[data-grid-tools="' + name + '"]');
      window.atlasGrids[name] = new VirtualGrid(grid, data, tools);
    });
  }

  /* ---- search (search_index.js -> window.ATLAS_SEARCH; vendor/minisearch -> window.MiniSearch).
   * One MiniSearch index over every feature, neuron, class and collection, built on the first keystroke:
   * human labels, automatic labels, tags, top classes and notes, class names, collection titles and their
   * prose, prefix and typo-tolerant. Results rank by tier: an exact unit id, then a match in a human label,
   * a class name or a collection title, then in an automatic label or tags, then in the top classes, then
   * in notes or a collection's prose; typo-only matches come after exact ones of the same field,
   * MiniSearch's score orders within a tier. An id typed in part matches ids by prefix: digits ("5",
   * "f/3", "mixed5b/f/3") list the ids that start with them right after the exact id and before any
   * text match; a lone kind ("f", "n", "f/") lists that kind's units after the text matches (a one-letter
   * query matches words by prefix too). Arrow keys move through the results, Enter opens one. The index
   * is built once, when the box gets focus or on the first search (benchmarks/bench_search.py measures both). */
  function AtlasSearch(input) {
    var index = window.ATLAS_SEARCH;
    var root = input.getAttribute("data-root") || "";
    var limit = parseInt(input.getAttribute("data-limit") || "20", 10);
    var results = document.getElementById(input.getAttribute("aria-controls") || "search-results");
    var status = document.getElementById("search-status");
    var more = document.getElementById("search-more");
    var units = null, byCode = null, ms = null, active = -1, shownHits = [];
    var KIND = { f: "feature", n: "neuron", c: "class", k: "collection" };
    var TIER = { human: 1, name: 1, label: 2, tags: 2, classes: 3, notes: 4 };  // name: a class or collection

    function load() {
      units = []; byCode = {};
      index.layers.forEach(function (L) {
        ["f", "n"].forEach(function (kind) {
          var g = L[kind];
          if (!g) return;
          for (var i = 0; i < g.n; i++) {
            var u = { kind: kind, layer: L.name, id: i, code: L.name + "/" + kind + "/" + i, label: g.label[i] || "",
                      classes: g.classes[i] || "", flags: g.flags[i] || "", density: g.density[i], thumb: g.thumb[i],
                      human: "", tags: "", notes: "" };
            u.href = index.model + "/" + u.code + "/index.html";
            byCode[u.code] = units.length;
            units.push(u);
          }
        });
      });
      index.annotations.forEach(function (a) {
        var k = byCode[a[0] + "/" + a[1] + "/" + a[2]];
        if (k === undefined) return;
        units[k].human = a[3]; units[k].tags = a[4]; units[k].notes = a[5];
      });
      index.classes.forEach(function (c) {
        units.push({ kind: "c", href: c[0], code: "class", name: c[1], human: "", label: "", tags: "",
                     classes: c[2], notes: "", density: "", flags: "" });
      });
      (index.collections || []).forEach(function (c) {
        units.push({ kind: "k", href: c[0], code: "collection", name: c[1], human: "", label: "", tags: "",
                     classes: "", notes: c[2], density: "", flags: "" });
      });
      ms = new window.MiniSearch({
        fields: ["name", "human", "label", "tags", "classes", "notes"],
        storeFields: [],
        extractField: function (doc, field) { return field === "id" ? doc.id : units[doc.id][field]; }
      });
      var docs = new Array(units.length);
      for (var k = 0; k < units.length; k++) docs[k] = { id: k };
      ms.addAll(docs);
    }
    function exact(q) {
      // "mixed5b/f/32", "f/32", "n/106", "32", "#32": the units with that id (features before neurons)
      var m = /^(?:([^\s\/]+)\/(?=[fn]\/))?(?:([fn])\/)?#?(\d+)$/.exec(q), out = [];
      if (!m) return out;
      index.layers.slice().reverse().forEach(function (L) {
        if (m[1] && m[1].toLowerCase() !== L.name.toLowerCase()) return;
        (m[2] ? [m[2]] : ["f", "n"]).forEach(function (kind) {
          var k = byCode[L.name + "/" + kind + "/" + (+m[3])];
          if (k !== undefined) out.push(k);
        });
      });
      return out;
    }
    function idPrefix(q) {
      // "5", "f/3", "mixed5b/f/3": the units whose id starts with the digits (the exact id aside);
      // "f", "n", "f/": every unit of that kind. Last layer first, features before neurons, ids ascending.
      var m = /^(?:([^\s\/]+)\/(?=[fn]\/))?(?:([fn])(?:\/|$))?#?(\d*)$/i.exec(q), out = [];
      if (!m || !(m[2] || m[3])) return { digits: false, hits: out };
      var digits = m[3] || "", kinds = m[2] ? [m[2].toLowerCase()] : ["f", "n"];
      index.layers.slice().reverse().forEach(function (L) {
        if (m[1] && m[1].toLowerCase() !== L.name.toLowerCase()) return;
        kinds.forEach(function (kind) {
          var g = L[kind];
          if (!g) return;
          for (var i = 0; i < g.n; i++) {
            var s = String(i);
            if (digits && (s === String(+digits) || s.indexOf(digits) !== 0)) continue;
            out.push(byCode[L.name + "/" + kind + "/" + i]);
          }
        });
      });
      return { digits: !!digits, hits: out };
    }
    function fuzzy(term) { return term.length < 4 ? 0 : term.length < 6 ? 1 : 2; }
    function search(q) {
      var hits = exact(q), seen = {}, k, ids = idPrefix(q);
      for (k = 0; k < hits.length; k++) seen[hits[k]] = 1;
      function add(list) { for (var j = 0; j < list.length; j++) if (!seen[list[j]]) { seen[list[j]] = 1; hits.push(list[j]); } }
      if (ids.digits) add(ids.hits);
      var terms = q.toLowerCase().split(/[\s,;:.!?()"]+/).filter(Boolean);
      // One-letter terms match words by prefix only when the whole query is that letter.
      var opts = { prefix: function (t) { return t.length > 1 || q.length === 1; }, fuzzy: fuzzy, combineWith: "AND",
                   boost: { name: 6, human: 6, label: 3, tags: 3, classes: 1.5, notes: 1 } };
      var found = ms.search(q, opts);
      if (!found.length && terms.length > 1) found = ms.search(q, Object.assign({}, opts, { combineWith: "OR" }));
      var ranked = found.map(function (r, order) {
        var tier = 9;
        Object.keys(r.match).forEach(function (term) {
          var typo = !terms.some(function (t) { return term.indexOf(t) === 0; });
          r.match[term].forEach(function (field) { tier = Math.min(tier, TIER[field] + (typo ? 4 : 0)); });
        });
        return { k: r.id, tier: tier, score: r.score, order: order };
      });
      ranked.sort(function (a, b) { return (a.tier - b.tier) || (b.score - a.score) || (a.order - b.order); });
      add(ranked.map(function (r) { return r.k; }));
      if (!ids.digits) add(ids.hits);
      return hits;
    }
    function item(k, n) {
      var u = units[k], li = el("li"), a = el("a");
      li.id = "search-hit-" + n;
      a.href = root + u.href;
      if (u.kind === "c" || u.kind === "k") {
        a.appendChild(el("span", "thumb none r-thumb", KIND[u.kind]));
      } else if (u.thumb) {
        var img = el("img", "thumb r-thumb");
        img.src = root + index.model + "/" + u.code + "/" + (u.thumb === 1 ? "thumb.webp" : "vis.webp");
        img.alt = ""; img.width = 48; img.height = 48; img.loading = "lazy";
        a.appendChild(img);
      } else {
        a.appendChild(el("span", "thumb none r-thumb", "no vis"));
      }
      var text = el("span", "r-text"), head = el("span", "r-head");
      head.appendChild(el("span", "r-code", u.kind === "c" || u.kind === "k" ? u.name : u.code));
      head.appendChild(el("span", "r-kind", KIND[u.kind]));
      text.appendChild(head);
      var label = u.human || u.label;
      if (u.kind === "c") text.appendChild(el("span", "r-extra", u.classes ? "superclass " + u.classes : "class page"));
      else if (u.kind === "k") text.appendChild(el("span", "r-extra", u.notes.length > 120 ? u.notes.slice(0, 119) + "\u2026" : u.notes || "collection page"));
      else {
        text.appendChild(el("span", "r-label" + (u.human ? " human" : "") + (label ? "" : " muted"), label || u.classes || "(no label)"));
        if (u.human && u.label && u.label !== u.human) text.appendChild(el("span", "r-extra r-auto", "automatic: " + u.label));
        var meta = u.density === "0%" ? "never fires" : "fires on " + u.density + " of images";
        if (label && u.classes) meta += " · " + u.classes;
        text.appendChild(el("span", "r-extra r-density", meta));
        if (u.tags) text.appendChild(el("span", "r-extra r-tags", "tags: " + u.tags));
        if (u.flags) text.appendChild(el("span", "r-flags", u.flags));
      }
      a.appendChild(text);
      li.appendChild(a);
      return li;
    }
    function select(n) {
      // The input keeps the focus (typing goes on); the chosen result is marked and read out by the status.
      var items = results.children;
      if (active >= 0 && items[active]) items[active].removeAttribute("data-active");
      active = n;
      if (n >= 0 && items[n]) {
        items[n].setAttribute("data-active", "true");
        if (items[n].scrollIntoView) items[n].scrollIntoView({ block: "nearest" });
        status.textContent = (n + 1) + " of " + items.length + ": " + items[n].textContent + " (Enter opens it)";
      }
    }
    function run() {
      var q = input.value.trim();
      results.textContent = "";
      active = -1; shownHits = [];
      if (more) more.hidden = true;
      if (!q) { status.textContent = ""; return; }
      if (!ms) load();
      var hits = search(q);
      shownHits = hits.slice(0, limit);
      var frag = document.createDocumentFragment();
      shownHits.forEach(function (k, n) { frag.appendChild(item(k, n)); });
      results.appendChild(frag);
      status.textContent = hits.length === 0 ? "No match." :
        hits.length > shownHits.length ? "Showing " + shownHits.length + " of " + hits.length + " matches." :
        hits.length + (hits.length === 1 ? " match." : " matches.");
      if (more && hits.length > shownHits.length) {
        more.hidden = false;
        more.querySelector("a").href = root + "search.html?q=" + encodeURIComponent(q);
      }
    }
    input.addEventListener("input", run);
    // The index is built when the box gets focus (before the first keystroke), or by the first search.
    input.addEventListener("focus", function () { if (!ms) window.setTimeout(function () { if (!ms) load(); }, 0); });
    input.addEventListener("keydown", function (event) {
      var n = results.children.length;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!n) return;
        event.preventDefault();
        select(event.key === "ArrowDown" ? Math.min(n - 1, active + 1) : Math.max(-1, active - 1));
      } else if (event.key === "Enter") {
        var target = results.children[active >= 0 ? active : 0];
        if (!target) return;
        event.preventDefault();
        window.location.href = target.querySelector("a").href;
      } else if (event.key === "Escape") {
        input.value = ""; run();
      }
    });
    var params = /[?&]q=([^&#]*)/.exec(window.location.search);
    if (params && !input.value) input.value = decodeURIComponent(params[1].replace(/\+/g, " "));
    if (input.value) run();
    this.run = run;
    this.load = function () { if (!ms) load(); };
  }
  var searchInput = document.querySelector("[data-search]");
  if (searchInput && window.ATLAS_SEARCH && window.MiniSearch) window.atlasSearch = new AtlasSearch(searchInput);

  /* ---- copy buttons in the citation box */
  Array.prototype.forEach.call(document.querySelectorAll(".cite .permalink, .cite .cite-text, .cite .bibtex"), function (node) {
    var button = el("button", "copy-btn", "copy");
    button.type = "button";
    button.addEventListener("click", function () {
      var text = node.textContent;
      var done = function () { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy"; }, 1500); };
      var fallback = function () {
        var range = document.createRange();
        range.selectNodeContents(node);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        try { if (document.execCommand("copy")) done(); } catch (e) { /* text stays selected */ }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
    var dt = node.closest("dd") && node.closest("dd").previousElementSibling;
    if (dt) dt.appendChild(button);
  });

  /* ---- the feature map lives in static/map.js */

  /* ---- each example's arg-max crop, a small zoom on where the unit fires most, drawn beside the image
   * (never over it) from the example's own image and the position in data-crop (the size, 250 %, is in
   * atlas.css). Decorative: without JavaScript the example, its heat-map and its numbers are all still there. */
  Array.prototype.forEach.call(document.querySelectorAll(".ex-img[data-crop]"), function (box) {
    var img = box.querySelector("img");
    var item = box.parentNode;
    if (!img || !item || !box.getAttribute("data-crop")) return;  // no spatial map: no crop
    var crop = el("i", "ex-crop");
    crop.style.backgroundImage = "url(" + JSON.stringify(img.src) + ")";
    crop.style.backgroundPosition = box.getAttribute("data-crop");
    item.insertBefore(crop, box.nextSibling);
    item.classList.add("has-crop");
    var list = item.closest(".examples");
    if (list) list.classList.add("crops");
  });

  /* ---- "try this image": on a unit page whose layer the try page runs (data-try: the try page's URL
   * with this unit pinned), each dataset example links to the try page with its image loaded
   * (#...&img=images/<name>.webp). Added here: the try page needs JavaScript anyway, and the page's
   * HTML stays the same size. */
  Array.prototype.forEach.call(document.querySelectorAll("[data-try]"), function (section) {
    var base = section.getAttribute("data-try");
    Array.prototype.forEach.call(section.querySelectorAll(".examples > li"), function (item) {
      var img = item.querySelector(".ex-img img");
      var name = img && /(?:^|\/)(images\/[A-Za-z0-9._-]+)$/.exec(img.getAttribute("src"));
      if (!name) return;
      var a = el("a", "ex-try", "try");
      a.href = base + "&img=" + name[1];
      a.title = "Open this image in the try page: every feature and neuron that fires on it";
      a.setAttribute("aria-label", "try this image (" + (img.alt || name[1]) + ")");
      item.appendChild(a);
    });
  });
})();
