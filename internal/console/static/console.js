// silo console: refreshes the main content in place every few seconds
// (the server answers X-Console-Partial requests with the content only),
// keeps what the operator is typing, and pauses while the tab is hidden.
// Loaded as a file: the Content-Security-Policy forbids inline script.
(function () {
  "use strict";
  var main = document.getElementById("content");
  if (!main) { return; }

  // Filter selects apply on change (delegated: content is replaced).
  main.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el && el.classList && el.classList.contains("autosubmit") && el.form) { el.form.submit(); }
  });

  var secs = parseInt(main.getAttribute("data-refresh"), 10);
  if (!(secs > 0)) { return; }
  var busy = false;
  var last = Date.now();

  function swap(html) {
    var active = document.activeElement;
    var keep = null;
    if (active && active.id && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) {
      keep = { id: active.id, value: active.value, start: null, end: null };
      try { keep.start = active.selectionStart; keep.end = active.selectionEnd; } catch (e) { /* not a text field */ }
    }
    // The search box keeps what was typed, focused or not.
    var q = document.getElementById("q");
    var typed = q ? q.value : null;
    main.innerHTML = html;
    var nq = document.getElementById("q");
    if (nq && typed !== null) { nq.value = typed; }
    if (keep) {
      var el = document.getElementById(keep.id);
      if (el) {
        el.value = keep.value;
        el.focus();
        if (keep.start !== null) { try { el.setSelectionRange(keep.start, keep.end); } catch (e) { /* ignore */ } }
      }
    }
  }

  function tick() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Console-Partial": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (res.status === 401) { window.location.reload(); return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (html) { if (typeof html === "string") { swap(html); } })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy = false; last = Date.now(); });
  }

  setInterval(tick, secs * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && Date.now() - last >= secs * 1000) { tick(); }
  });
})();
