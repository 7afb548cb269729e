/* prisme_lite tracking script: pageviews (single-page apps too), outbound links, downloads, custom events */
(function () {
  "use strict";
  var script = document.currentScript;
  function option(name) { return script && script.getAttribute("data-" + name); }
  var base = (option("prisme-url") || new URL(script.src).origin).replace(/\/+$/, "");
  var downloads = new RegExp("\\.(pdf|zip|gz|tgz|bz2|xz|7z|rar|dmg|exe|msi|deb|rpm|apk|iso|csv|xlsx?|docx?|" +
    "pptx?|odt|ods|mp3|mp4|mov|avi|mkv|epub)$", "i");
  var lastPage = null;

  function enabled() {
    try { return localStorage.getItem("prismeAnalytics.tracking.enable") !== "false"; } catch (_e) { return true; }
  }

  function pageUrl(options) {
    var url = new URL(location.href);
    var domain = (options && options.domain) || option("domain");
    if (domain) url.host = domain;
    url.pathname = (options && options.path) || option("path") || url.pathname;
    url.hash = "";
    return url.href;
  }

  function send(route, headers, body, options) {
    if (!enabled()) return Promise.resolve();
    options = options || {};
    headers["X-Prisme-Referrer"] = pageUrl(options);
    var visitor = options.visitorId || option("visitor-id");
    if (visitor) headers["X-Prisme-Visitor-Id"] = visitor;
    return fetch(base + "/api/v1/events/" + route, {
      method: "POST", headers: headers, body: body, credentials: "omit", keepalive: options.keepalive !== false
    }).catch(function () {});
  }

  function pageview(options) {
    options = options || {};
    var headers = {};
    var referrer = options.referrer != null ? options.referrer : lastPage || document.referrer;
    if (referrer) headers["X-Prisme-Document-Referrer"] = referrer;
    var status = options.status || option("status");
    if (status) headers["X-Prisme-Status"] = String(status);
    lastPage = pageUrl(options);
    return send("pageviews", headers, null, options);
  }

  function trigger(name, props, options) {
    var headers = {"Content-Type": "application/json"};
    return send("custom/" + encodeURIComponent(name), headers, JSON.stringify(props || {}), options);
  }

  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest && event.target.closest("a[href]");
    if (!link) return;
    var url;
    try { url = new URL(link.href, location.href); } catch (_e) { return; }
    if (!/^https?:$/.test(url.protocol)) return;
    var target = url.origin + url.pathname; // never the query string: it may hold personal data
    if ((link.hasAttribute("download") || downloads.test(url.pathname)) && option("file-downloads") !== "false") {
      send("file-downloads", {"Content-Type": "text/plain"}, target);
    } else if (url.host !== location.host && option("outbound-links") !== "false") {
      send("outbound-links", {"Content-Type": "text/plain"}, target);
    }
  }, true);

  var manual = option("manual");
  var pushState = history.pushState;
  if (manual === null || manual === "false") {
    history.pushState = function () {
      var result = pushState.apply(this, arguments);
      pageview();
      return result;
    };
    addEventListener("popstate", function () { pageview(); });
    pageview();
  }
  window.prisme = {pageview: pageview, trigger: trigger};
})();
