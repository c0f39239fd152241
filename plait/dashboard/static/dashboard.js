// plait dashboard: live pages over SSE, and actions without a full reload. Pages work without it.
(function () {
  "use strict";
  var refreshing = null;

  function swapMain(html, url) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("main");
    if (!fresh) { return; }
    var checked = Array.prototype.map.call(
      document.querySelectorAll("#main input[type=checkbox]:checked"), function (box) { return box.value; });
    document.getElementById("main").replaceWith(fresh);
    checked.forEach(function (value) {
      var box = fresh.querySelector('input[type=checkbox][value="' + CSS.escape(value) + '"]');
      if (box) { box.checked = true; }
    });
    document.title = doc.title;
    ["data-live", "data-live-refresh"].forEach(function (name) {
      var value = doc.body.getAttribute(name);
      if (value === null) { document.body.removeAttribute(name); } else { document.body.setAttribute(name, value); }
    });
    if (url && url !== location.href) { history.pushState(null, "", url); }
    connect();
  }

  // Fetch the page again (not the database: the server renders it once per change, for this tab).
  function refresh() {
    if (refreshing) { return; }
    refreshing = setTimeout(function () {
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          refreshing = null;
          var open = Array.prototype.map.call(document.querySelectorAll("details[open][id]"), function (d) { return d.id; });
          if (html) { swapMain(html, null); }
          open.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
        })
        .catch(function () { refreshing = null; });
    }, 150);
  }

  var source = null, sourceUrl = null;
  function connect() {
    var url = document.body.getAttribute("data-live");
    var mode = document.body.getAttribute("data-live-refresh");
    if (url === sourceUrl && source) { return; }
    if (source) { source.close(); source = null; sourceUrl = null; }
    if (!url || !mode || !window.EventSource) { return; }
    source = new EventSource(url);
    sourceUrl = url;
    source.addEventListener("change", function (message) {
      var note = JSON.parse(message.data);
      if (mode === "runs" && note.type.indexOf("run.") !== 0) { return; }
      refresh();
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    // getAttribute: a field named "action" or "method" shadows the form's own properties.
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post" || form.hasAttribute("data-plain") || !window.fetch || !window.URLSearchParams) { return; }
    event.preventDefault();
    var data = new URLSearchParams(new FormData(form, submitter));
    var target = (submitter && submitter.getAttribute("formaction")) || form.getAttribute("action") || location.href;
    fetch(target, { method: "POST", body: data, credentials: "same-origin",
                    headers: { "Content-Type": "application/x-www-form-urlencoded" } })
      .then(function (r) { return r.text().then(function (html) { return { html: html, url: r.url }; }); })
      .then(function (page) { swapMain(page.html, page.url); window.scrollTo(0, 0); })
      .catch(function () { HTMLFormElement.prototype.submit.call(form); });
  });

  // A long run's step panels are fetched when opened (the page itself lists only their summaries).
  document.addEventListener("toggle", function (event) {
    var panel = event.target;
    var url = panel.getAttribute && panel.getAttribute("data-lazy");
    if (!panel.open || !url || panel.hasAttribute("data-loaded")) { return; }
    panel.setAttribute("data-loaded", "");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var slot = panel.querySelector(".lazy-slot");
        var body = html && new DOMParser().parseFromString(html, "text/html").querySelector(".step-body");
        if (slot && body) { slot.replaceWith(document.importNode(body, true)); }
      })
      .catch(function () { panel.removeAttribute("data-loaded"); });
  }, true);

  // A node picked on the graph opens its step's panel (with "Rerun from here").
  function openTarget() {
    var target = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  document.addEventListener("DOMContentLoaded", openTarget);
  window.addEventListener("popstate", function () { if (!location.hash) { location.reload(); } });
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
  document.addEventListener("DOMContentLoaded", connect);
})();
