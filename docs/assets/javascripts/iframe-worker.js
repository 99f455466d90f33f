/* Search for a site opened from the disk (file://), with no network: a stand-in for Web Workers.
 *
 * Browsers refuse `new Worker("file:///...")`, so Material for MkDocs runs its search worker through a
 * shim that its offline plugin would otherwise load from a CDN (unpkg.com/iframe-worker). This one is
 * written for imgclf's docs and does the same: the worker's script runs in a hidden iframe of the page,
 * `postMessage` both ways becomes a function call, and `importScripts` loads scripts by <script> tags.
 * Served over http(s), real workers are used and this file does nothing.
 */
(function () {
  "use strict";
  if (location.protocol !== "file:") return;

  function IFrameWorker(url) {
    var worker = this;
    url = new URL(url, document.baseURI).href;  /* the worker's scripts load relative to it, as in a worker */
    this.listeners = [];
    this.queue = [];
    this.ready = false;
    this.onmessage = null;
    this.iframe = document.createElement("iframe");
    this.iframe.setAttribute("aria-hidden", "true");
    this.iframe.setAttribute("tabindex", "-1");
    this.iframe.style.display = "none";
    document.body.appendChild(this.iframe);
    var win = this.iframe.contentWindow;
    var doc = win.document;

    function load(src) {
      return new Promise(function (resolve, reject) {
        var script = doc.createElement("script");
        script.src = new URL(src, url).href;
        script.onload = function () { resolve(); };
        script.onerror = function () { reject(new Error("could not load " + src)); };
        (doc.head || doc.documentElement).appendChild(script);
      });
    }

    /* The worker's side: what it calls as globals */
    win.postMessage = function (data) { worker.emit(data); };
    win.importScripts = function () {
      var urls = Array.prototype.slice.call(arguments);
      return urls.reduce(function (done, src) { return done.then(function () { return load(src); }); },
                         Promise.resolve());
    };
    load(url).then(function () {
      worker.ready = true;
      worker.queue.splice(0).forEach(function (data) { worker.postMessage(data); });
    });
  }

  /* The page's side: what Material calls on a Worker */
  IFrameWorker.prototype.postMessage = function (data) {
    if (!this.ready) { this.queue.push(data); return; }
    var win = this.iframe.contentWindow;
    win.dispatchEvent(new win.MessageEvent("message", { data: data }));
  };
  IFrameWorker.prototype.emit = function (data) {
    var event = new MessageEvent("message", { data: data });
    if (typeof this.onmessage === "function") this.onmessage(event);
    this.listeners.forEach(function (fn) { fn(event); });
  };
  IFrameWorker.prototype.addEventListener = function (type, fn) {
    if (type === "message") this.listeners.push(fn);
  };
  IFrameWorker.prototype.removeEventListener = function (type, fn) {
    this.listeners = this.listeners.filter(function (f) { return f !== fn; });
  };
  IFrameWorker.prototype.terminate = function () { this.iframe.remove(); };

  window.IFrameWorker = IFrameWorker;
  window.Worker = IFrameWorker;
})();
