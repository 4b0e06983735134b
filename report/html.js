// lab's report page: a click on a cell shows its trace, the checkbox hides
// the scenarios without disagreements. Everything comes from the report
// data embedded in the page; nothing is fetched.
(function () {
  "use strict";
  // The data is parsed at the first trace asked for, not while the page
  // opens: for a large run it is most of the page.
  var data = null;
  function report() {
    if (!data) data = JSON.parse(document.getElementById("report-data").textContent);
    return data;
  }
  var matrix = document.getElementById("matrix");
  var trace = document.getElementById("trace");
  var filter = document.getElementById("only-disagreements");
  var shown = document.getElementById("shown");
  var selected = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  function pairs(m) {
    return Object.keys(m || {}).sort().map(function (k) { return k + "=" + m[k]; }).join(", ");
  }

  function micros(n) {
    return n >= 1000 ? (n / 1000).toFixed(1) + " ms" : n + " µs";
  }

  function showTrace(s, t) {
    var data = report();
    var sc = data.scenarios[s], cell = sc && sc.cells[t];
    if (!cell) return;
    var target = data.targets[t], res = cell.result;
    if (selected) selected.classList.remove("selected");
    selected = document.getElementById("cell-" + s + "-" + t);
    if (selected) selected.classList.add("selected");

    var dl = el("dl");
    function row(name, value) {
      if (value === "" || value === null || value === undefined) return;
      dl.appendChild(el("dt", {}, [name]));
      dl.appendChild(el("dd", {}, [typeof value === "string" ? value : value]));
    }
    row("outcome", el("span", { "class": "badge " + cell.state }, [(cell.outcome || "no result") + " (" + cell.state + ")"]));
    row(data.source + " claims", cell.claim ? cell.claim + (cell.claim_key ? " (for " + cell.claim_key + ")" : "") : "nothing for this OS");
    if (data.baseline) {
      row("baseline " + data.baseline.id, (cell.baseline || "no result") + " (" + cell.baseline_state + ")");
    }
    if (res && res.reason) row("reason", res.reason);
    if (res) row("ports", pairs(res.ports));
    if (res) row("addresses", pairs(res.addrs));
    if (res) row("took", micros(res.micros));
    row("source", sc.source);
    row("note", sc.note);
    var env = target.env;
    row("target", target.name + (env ? " — " + env.os + " " + env.kernel_release + " " + env.arch : "") + " (" + target.status + ")");
    if (!res && target.error) row("target error", target.error);

    var steps;
    if (res && res.steps && res.steps.length) {
      steps = el("table", { "class": "steps" }, [
        el("thead", {}, [el("tr", {}, ["#", "step", "call", "result", "errno", "local address", "time"].map(function (h) { return el("th", {}, [h]); }))]),
        el("tbody", {}, res.steps.map(function (st, i) {
          var result = st.result;
          if (st.counts) result += " " + st.counts.join("/") + " of " + st.sent;
          if (st.bytes) result += " (" + st.bytes + " bytes)";
          if (st.waited_ms) result += " (waited " + (st.waited_ms / 1000).toFixed(1) + " s)";
          return el("tr", { "class": i === res.steps.length - 1 ? "last" : "" }, [
            el("td", {}, [String(i + 1)]), el("td", {}, [st.text]), el("td", {}, [st.call || ""]),
            el("td", {}, [result]), el("td", {}, [st.errno ? String(st.errno) : ""]),
            el("td", {}, [st.local || ""]), el("td", {}, [micros(st.micros || 0)])
          ]);
        }))
      ]);
    } else {
      steps = el("div", {}, [
        el("p", { "class": "none" }, [res ? "The agent recorded no steps. The scenario's steps:" : "No result. The scenario's steps:"]),
        el("ol", {}, (sc.steps || []).map(function (x) { return el("li", {}, [el("code", {}, [x])]); }))
      ]);
    }
    var close = el("button", { "class": "close", "type": "button", "aria-label": "close" }, ["×"]);
    close.addEventListener("click", hideTrace);
    trace.replaceChildren(close,
      el("h3", {}, [sc.id + " on " + cell.target]),
      el("div", { "class": "title" }, [sc.title || ""]),
      el("div", { "class": "cols" }, [dl, el("div", {}, [el("h4", {}, ["Steps"]), steps])]));
    trace.hidden = false;
    document.documentElement.classList.add("trace-open");
    if (selected) selected.scrollIntoView({ block: "nearest" });
    trace.dataset.cell = s + "-" + t;
    if (location.hash !== "#cell-" + s + "-" + t) history.replaceState(null, "", "#cell-" + s + "-" + t);
  }

  function hideTrace() {
    trace.hidden = true;
    document.documentElement.classList.remove("trace-open");
    if (selected) selected.classList.remove("selected");
    selected = null;
    history.replaceState(null, "", location.pathname + location.search);
  }

  function countShown() {
    var all = matrix.dataset.scenarios;
    shown.textContent = (filter.checked ? matrix.dataset.disagreeing : all) + " of " + all + " scenarios shown";
  }

  matrix.addEventListener("click", function (ev) {
    var td = ev.target.closest("td.cell");
    if (td) showTrace(+td.dataset.s, +td.dataset.t);
  });
  matrix.addEventListener("keydown", function (ev) {
    var td = ev.target.closest("td.cell");
    if (td && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); showTrace(+td.dataset.s, +td.dataset.t); }
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && !trace.hidden) hideTrace(); });
  filter.addEventListener("change", function () {
    document.body.classList.toggle("only-disagreements", filter.checked);
    countShown();
  });
  // The matrix's header sticks just below the sticky controls, whose
  // height depends on how the legend wraps.
  // Scrolling to a cell (a link to it, or scrollIntoView) keeps it clear of
  // both.
  var controls = document.querySelector(".controls");
  var head = document.querySelector("#matrix .matrix-head");
  function stick() {
    document.documentElement.style.setProperty("--controls-height", controls.offsetHeight + "px");
    document.documentElement.style.scrollPaddingTop = (controls.offsetHeight + head.offsetHeight + 8) + "px";
  }
  window.addEventListener("resize", stick);
  stick();
  document.body.classList.toggle("only-disagreements", filter.checked);
  countShown();
  var m = /^#cell-(\d+)-(\d+)$/.exec(location.hash);
  if (m) showTrace(+m[1], +m[2]);
  document.body.dataset.ready = "true";
})();
