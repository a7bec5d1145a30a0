// Re-fetches the live part of the page every few seconds (the same URL with partial=1) and swaps it in.
// The HTML comes from this server, escaped there; nothing here builds markup from data.
// It waits while the tab is hidden, while focus is inside the live part (a keyboard user on a link)
// and while text in it is selected, so a refresh never takes either away.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh") || "2", 10) || 2;
  var busy = false;
  var last = null;
  function partialUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    return url.toString();
  }
  function userIsThere() {
    var selection = window.getSelection ? window.getSelection() : null;
    if (selection && !selection.isCollapsed && live.contains(selection.anchorNode)) { return true; }
    return live.contains(document.activeElement) && document.activeElement !== live;
  }
  function refresh() {
    if (busy || document.hidden || userIsThere()) { return; }
    busy = true;
    fetch(partialUrl(), { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        live.removeAttribute("data-stale");
        if (html !== last && !userIsThere()) {
          live.innerHTML = html;
          last = html;
        }
      })
      .catch(function () { live.setAttribute("data-stale", "true"); })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
}());
