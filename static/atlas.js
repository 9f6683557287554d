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

  /* ---- sortable unit grids (layer page) */
  Array.prototype.forEach.call(document.querySelectorAll("[data-sort-target]"), function (sorter) {
    var grid = document.getElementById(sorter.getAttribute("data-sort-target"));
    if (!grid) return;
    var buttons = sorter.querySelectorAll("button[data-sort]");
    function num(li, key) { return parseFloat(li.getAttribute("data-" + key)) || 0; }
    function sortBy(key) {
      var items = Array.prototype.slice.call(grid.children);
      items.sort(function (a, b) {
        var ia = num(a, "id"), ib = num(b, "id");
        if (key === "id") return ia - ib;
        return (num(b, key) - num(a, key)) || (ia - ib); // largest first, ties by id
      });
      var frag = document.createDocumentFragment();
      items.forEach(function (li) { frag.appendChild(li); });
      grid.appendChild(frag);
      Array.prototype.forEach.call(buttons, function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-sort") === key ? "true" : "false");
      });
    }
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () { sortBy(b.getAttribute("data-sort")); });
    });
    sorter.hidden = false;
  });

  /* ---- search over the prebuilt index (search_index.js -> window.ATLAS_SEARCH) */
  var searchInput = document.querySelector("[data-search]");
  if (searchInput && window.ATLAS_SEARCH) {
    var index = window.ATLAS_SEARCH;
    var results = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    var MAX_RESULTS = 50;
    var features = index.features.map(function (f) {
      // [href, layer, id, label, classes, flags, density (as the pages print it)]
      return { href: f[0], code: f[1] + "/f/" + f[2], id: String(f[2]), label: f[3], classes: f[4], flags: f[5] || "",
               density: f[6], hay: (f[3] + " " + f[4]).toLowerCase() };
    });
    var classes = index.classes.map(function (c) {
      return { href: c[0], name: c[1], superclass: c[2], hay: (c[1] + " " + c[2]).toLowerCase() };
    });
    var run = function () {
      var q = searchInput.value.trim().toLowerCase();
      results.textContent = "";
      if (!q) { status.textContent = ""; return; }
      var idQuery = q.replace(/^.*\bf\//, "").replace(/^#/, "");
      var words = q.split(/\s+/);
      var allIn = function (text) { return words.every(function (w) { return text.indexOf(w) >= 0; }); };
      var scored = [];
      features.forEach(function (f) {
        var label = f.label.toLowerCase(), score = -1;
        if (/^\d+$/.test(idQuery) && f.id === idQuery && (q.indexOf("/") < 0 || f.code.toLowerCase().slice(-q.length) === q)) score = 0;
        else if (f.code.toLowerCase() === q) score = 0;
        else if (label.indexOf(q) === 0) score = 1;
        else if (label.indexOf(q) >= 0) score = 2;
        else if (allIn(label)) score = 3;
        else if (allIn(f.hay)) score = 4; // words found in the label or its top classes
        if (score >= 0) scored.push({ score: score, item: f, kind: "f" });
      });
      classes.forEach(function (c) {
        var i = c.hay.indexOf(q);
        if (i >= 0) scored.push({ score: i === 0 ? 1 : 2, item: c, kind: "c" });
        else if (allIn(c.hay)) scored.push({ score: 3, item: c, kind: "c" });
      });
      scored.sort(function (a, b) { return a.score - b.score; }); // stable: index order within a score
      var shown = scored.slice(0, MAX_RESULTS);
      shown.forEach(function (r) {
        var li = el("li"), a = el("a");
        a.href = r.item.href;
        if (r.kind === "f") {
          a.appendChild(el("span", "r-code", r.item.code));
          a.appendChild(el("span", "r-label", r.item.label || "(no label)"));
          if (r.item.classes) a.appendChild(el("span", "r-extra", r.item.classes));
          if (r.item.density) a.appendChild(el("span", "r-extra r-density",
            r.item.density === "0%" ? "never fires" : "fires on " + r.item.density + " of images"));
          if (r.item.flags) a.appendChild(el("span", "r-flags", r.item.flags));
        } else {
          a.appendChild(el("span", "r-code", "class"));
          a.appendChild(el("span", "r-label", r.item.name));
          if (r.item.superclass) a.appendChild(el("span", "r-extra", r.item.superclass));
        }
        li.appendChild(a);
        results.appendChild(li);
      });
      status.textContent = scored.length === 0 ? "No match." :
        scored.length > shown.length ? "Showing " + shown.length + " of " + scored.length + " matches." :
        scored.length + (scored.length === 1 ? " match." : " matches.");
    };
    searchInput.addEventListener("input", run);
    if (searchInput.value) run();
  }

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
    var figure = box.parentNode;
    if (!img || !figure) return;
    var crop = el("i", "ex-crop");
    crop.style.backgroundImage = "url(" + JSON.stringify(img.src) + ")";
    crop.style.backgroundPosition = box.getAttribute("data-crop");
    figure.insertBefore(crop, box.nextSibling);
    figure.classList.add("has-crop");
    var list = figure.closest(".examples");
    if (list) list.classList.add("crops");
  });
})();
