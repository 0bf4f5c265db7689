// rsched dashboard: action buttons (POST with the CSRF token) and live updates (SSE).
// No build step, no dependencies.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var token = document.querySelector('meta[name="csrf-token"]').content;

  function flash(text, bad) {
    var el = document.getElementById("flash");
    el.textContent = text;
    el.className = bad ? "bad" : "good";
    clearTimeout(flash.t);
    flash.t = setTimeout(function () { el.textContent = ""; el.className = ""; }, 4000);
  }

  function refresh() {  // the current page's <main>, rendered by the server
    return fetch(location.pathname + location.search, {
      headers: {"X-Fragment": "1"}, credentials: "same-origin"
    }).then(function (r) {
      if (r.status === 401) { location.href = "/login"; return; }
      return r.text().then(function (html) { main.innerHTML = html; });
    });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button[data-post]");
    if (!btn) return;
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    btn.disabled = true;
    fetch(btn.dataset.post, {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": token}
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) { flash(body.detail || body.title || ("HTTP " + r.status), true); return; }
        flash(body.message || "done", false);
        if (btn.dataset.go) { location.href = btn.dataset.go; return; }
        return refresh();
      });
    }).catch(function (err) { flash(String(err), true); })
      .finally(function () { btn.disabled = false; });
  });

  var live = document.body.dataset.live;
  if (live && window.EventSource) {
    var dot = document.getElementById("live-dot");
    var source = new EventSource("/ui/events?page=" + encodeURIComponent(live));
    source.addEventListener("main", function (ev) {
      main.innerHTML = ev.data;
      if (dot) dot.className = "on";
    });
    source.onerror = function () { if (dot) dot.className = "off"; };
  }
})();
