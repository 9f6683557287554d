/* The blind rating survey (Terekhov). Data: window.ATLAS_SURVEY (rate/survey.js).
   Answers live in localStorage under the survey's key, so the page works from file:// and resumes.
   Export builds a Blob and downloads it; nothing leaves the browser otherwise. */
(function () {
  "use strict";
  var S = window.ATLAS_SURVEY;
  var root = document.getElementById("survey");
  if (!S || !root) return;
  var QS = ["q3", "q4", "q5", "q6"];
  var store = null;
  try { store = window.localStorage; } catch (e) { store = null; }
  var memory = {};
  function load(key) {
    try { var v = store ? store.getItem(key) : memory[key]; return v ? JSON.parse(v) : null; } catch (e) { return null; }
  }
  function save(key, value) {
    var text = JSON.stringify(value);
    try { if (store) store.setItem(key, text); else memory[key] = text; } catch (e) { memory[key] = text; }
  }
  function raterId() {
    var id = load("atlasgen-rater");
    if (typeof id === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(id)) return id;
    var bytes = new Uint8Array(8);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    id = "r" + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    save("atlasgen-rater", id);
    return id;
  }
  var state = load(S.key) || {};
  state.answers = state.answers || {};
  state.rater = state.rater || raterId();
  state.rater_name = state.rater_name || "";
  function persist() { save(S.key, state); }

  var $ = function (id) { return document.getElementById(id); };
  var items = S.items;
  function complete(a) { return !!(a && a.revealed && a.q1 && QS.every(function (q) { return a[q]; })); }
  function firstOpen() {
    for (var i = 0; i < items.length; i++) if (!complete(state.answers[items[i].id])) return i;
    return -1;
  }
  var pos = typeof state.pos === "number" && state.pos >= 0 && state.pos < items.length ? state.pos : Math.max(firstOpen(), 0);

  function setRadios(name, value, disabled) {
    var inputs = root.querySelectorAll('input[name="' + name + '"]');
    for (var i = 0; i < inputs.length; i++) {
      inputs[i].checked = String(value) === inputs[i].value;
      inputs[i].disabled = !!disabled;
    }
  }
  function radioValue(name) {
    var c = root.querySelector('input[name="' + name + '"]:checked');
    return c ? parseInt(c.value, 10) : 0;
  }
  function error(text) { var e = $("form-error"); e.textContent = text || ""; e.hidden = !text; }
  function done() { return items.every(function (it) { return complete(state.answers[it.id]); }); }

  function show() {
    error("");
    var n = items.filter(function (it) { return complete(state.answers[it.id]); }).length;
    $("progress").textContent = n + " of " + items.length + " rated";
    $("done").hidden = !done();
    if (!items.length) { $("item").hidden = true; return; }
    var it = items[pos], a = state.answers[it.id] || {};
    $("item-title").textContent = "Feature " + (pos + 1) + " of " + items.length;
    var vis = $("s-vis");
    vis.src = it.vis;
    vis.className = "vis-img" + (S.pixelated ? " px" : "");
    setRadios("q1", a.q1, a.revealed);
    $("q2").value = a.phrases || "";
    $("q2").disabled = !!a.revealed;
    $("reveal").hidden = !!a.revealed;
    $("locked-note").hidden = !a.revealed;
    $("phase2").hidden = !a.revealed;
    $("examples-box").hidden = !a.revealed;
    QS.forEach(function (q) { setRadios(q, a[q], false); });
    var ol = $("s-examples");
    ol.textContent = "";
    if (a.revealed) {
      it.examples.forEach(function (src) {
        var li = document.createElement("li");
        var img = document.createElement("img");
        img.src = src; img.alt = "dataset example"; img.width = 120; img.height = 120;
        if (S.pixelated) img.className = "px";
        li.appendChild(img);
        ol.appendChild(li);
      });
    }
    $("prev").disabled = pos === 0;
    $("next").disabled = pos === items.length - 1;
  }
  function go(p) { pos = Math.max(0, Math.min(items.length - 1, p)); state.pos = pos; persist(); show(); }

  $("phase1").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q1 = radioValue("q1");
    if (!q1) { error("Answer Q1 first."); return; }
    var it = items[pos];
    var a = state.answers[it.id] || {};
    a.q1 = q1; a.phrases = $("q2").value.slice(0, 500); a.revealed = true;
    state.answers[it.id] = a;
    persist(); show();
  });
  $("phase2").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var it = items[pos], a = state.answers[it.id];
    var missing = QS.filter(function (q) { return !radioValue(q); });
    if (missing.length) { error("Answer " + missing.map(function (q) { return q.toUpperCase(); }).join(", ") + " first."); return; }
    QS.forEach(function (q) { a[q] = radioValue(q); });
    a.answered = new Date().toISOString();
    persist();
    var next = firstOpen();
    go(next < 0 ? pos : next);
  });
  $("prev").addEventListener("click", function () { go(pos - 1); });
  $("next").addEventListener("click", function () { go(pos + 1); });
  $("rater-name").value = state.rater_name;
  $("rater-name").addEventListener("input", function () { state.rater_name = this.value.slice(0, 100); persist(); });
  $("reset").addEventListener("click", function () {
    if (!window.confirm("Delete your answers to this survey from this browser?")) return;
    state.answers = {}; state.pos = 0; persist(); go(0);
  });

  function q(v) { return (v - 1) / 4; }
  function rows() {
    return items.filter(function (it) { return complete(state.answers[it.id]); }).map(function (it) {
      var a = state.answers[it.id];
      return { feature: it.id, q1: a.q1, phrases: a.phrases || "", q3: a.q3, q4: a.q4, q5: a.q5, q6: a.q6,
               I: Math.round(((q(a.q1) * q(a.q3) + q(a.q4)) / 2) * 1e6) / 1e6, answered: a.answered || "" };
    });
  }
  function download(name, type, text) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var link = document.createElement("a");
    link.href = url; link.download = name; link.style.display = "none";
    document.body.appendChild(link); link.click(); document.body.removeChild(link);
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }
  function fileName(ext) { return "ratings-" + S.model + "-" + S.layer + "-" + state.rater + "." + ext; }
  $("export-json").addEventListener("click", function () {
    var doc = { format: S.format, version: S.version, model: S.model, layer: S.layer, sae_sha256: S.sae_sha256,
                survey: S.survey, rater: state.rater, rater_name: state.rater_name, exported: new Date().toISOString(),
                ratings: rows() };
    download(fileName("json"), "application/json", JSON.stringify(doc, null, 1) + "\n");
  });
  function cell(v) {
    var s = String(v == null ? "" : v);
    if (/^[=+\-@]/.test(s)) s = "'" + s;  // never a spreadsheet formula; import strips the quote
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  $("export-csv").addEventListener("click", function () {
    var cols = ["rater", "rater_name", "model", "layer", "sae_sha256", "feature", "q1", "q2_phrases", "q3", "q4", "q5", "q6", "I", "answered"];
    var lines = [cols.join(",")];
    rows().forEach(function (r) {
      lines.push([state.rater, state.rater_name, S.model, S.layer, S.sae_sha256, r.feature, r.q1, r.phrases,
                  r.q3, r.q4, r.q5, r.q6, r.I, r.answered].map(cell).join(","));
    });
    download(fileName("csv"), "text/csv", lines.join("\r\n") + "\r\n");
  });

  root.hidden = false;
  show();
})();
