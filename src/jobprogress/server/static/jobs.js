// Re-fetches the live part of the page every few seconds (the same URL with partial=1) and swaps it in.
// The HTML comes from this server, escaped there; nothing here builds markup from data.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh") || "2", 10) || 2;
  var busy = false;
  function partialUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    return url.toString();
  }
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(partialUrl(), { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.removeAttribute("data-stale");
      })
      .catch(function () { live.setAttribute("data-stale", "true"); })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
}());
