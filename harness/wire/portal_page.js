// The agent portal's real-time part, as the seed's SocketContext does it, with no framework:
// socket.io-client with the token in `auth`, the four event types, a Live indicator, a
// disconnect banner, and each event's query invalidation as a REST refetch with Authorization.
// The harness drives it through window.portal. The token lives in this closure only: it is
// never written into the page, so a screenshot cannot show it.
(function () {
  "use strict";
  var INVALIDATES = {
    new_message: ["conversations", "dashboard-metrics"],
    conversation_update: ["conversations"],
    status_update: ["conversations"],
    metrics_update: ["dashboard-metrics"],
  };
  var LABEL = {
    new_message: "New message", conversation_update: "Conversation update",
    status_update: "Status update", metrics_update: "Metrics update",
  };
  var portal = { state: "idle", events: [], errors: [], disconnects: [], connects: [], attempts: [], fetches: [],
                 socket: null };
  var token = null;
  var config = null;

  function el(id) { return document.getElementById(id); }

  function show(state, text) {
    portal.state = state;
    var live = el("live");
    live.className = "indicator " + state;
    live.textContent = text;
    el("banner").hidden = state !== "lost";
  }

  function summary(data) {
    var text;
    try { text = JSON.stringify(data); } catch (e) { text = String(data); }
    return text.length > 160 ? text.slice(0, 157) + "..." : text;
  }

  function list(type, data) {
    var li = document.createElement("li");
    var b = document.createElement("b");
    b.textContent = type;
    li.appendChild(b);
    li.appendChild(document.createTextNode(" " + summary(data)));
    var ul = el("events");
    ul.insertBefore(li, ul.firstChild);
    while (ul.children.length > 12) ul.removeChild(ul.lastChild);
    el("count").textContent = String(portal.events.length);
  }

  function rest(path) {
    // What the portal's API client does: the gateway's origin, Bearer token, JSON back.
    var started = performance.now();
    return fetch((config.restUrl || config.url) + path, { headers: { Authorization: "Bearer " + token } }).then(
      function (resp) {
        return resp.text().then(function (text) {
          el("fetched").textContent = path + " " + resp.status;
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
          return { ok: resp.ok, status: resp.status, body: body, ms: performance.now() - started };
        });
      },
      function (err) {
        el("fetched").textContent = path + " refused by the browser: " + String(err && err.message || err);
        return { ok: false, status: 0, error: String(err && err.message || err), ms: performance.now() - started }; }
    );
  }

  function refetch(key) {
    var path = config.restPaths && config.restPaths[key];
    if (!path) return;
    rest(path).then(function (result) {
      portal.fetches.push({ key: key, status: result.status, ok: result.ok, error: result.error || null, body: result.body });
      el("fetched").textContent = key + " " + (result.ok ? result.status : (result.error || result.status));
    });
  }

  portal.start = function (cfg) {
    config = cfg;
    token = cfg.token;
    el("who").textContent = cfg.label || "";
    show("connecting", "Connecting");
    var socket = io(cfg.url, {
      path: cfg.path,
      auth: function (cb) { cb({ token: token }); },  // read at every (re)connect: a refreshed token is used
      reconnectionAttempts: cfg.attempts, reconnectionDelay: cfg.delay, reconnectionDelayMax: cfg.delayMax,
      randomizationFactor: cfg.jitter,
    });
    portal.socket = socket;
    socket.on("connect", function () {
      console.log("[SocketContext] Connected: " + socket.id);
      // socket.recovered: the gateway resumed the session (connection state recovery)
      portal.connects.push({ at: Date.now(), recovered: !!socket.recovered });
      show("live", "Live");
    });
    socket.on("disconnect", function (reason) {
      console.log("[SocketContext] Disconnected: " + reason);
      portal.disconnects.push({ reason: reason, at: Date.now() });
      show("lost", "Offline");
    });
    socket.on("connect_error", function (err) {
      var entry = { message: String(err && err.message), data: err && err.data !== undefined ? err.data : null };
      portal.errors.push(entry);
      console.log("[SocketContext] Connection error: " + entry.message);
      var code = entry.data && entry.data.code;
      show(socket.active ? "lost" : "refused", code ? "Refused (" + code + ")" : "Offline");
    });
    // The Manager's own reconnect attempts, as socket.io-client schedules them (the emulator's backoff is compared with these)
    socket.io.on("reconnect_attempt", function (n) { portal.attempts.push({ n: n, at: Date.now() }); });
    socket.io.on("reconnect_failed", function () { portal.attempts.push({ n: null, failed: true, at: Date.now() }); });
    Object.keys(INVALIDATES).forEach(function (type) {
      socket.on(type, function (data) {
        console.log("[SocketContext] " + LABEL[type] + ":", data);
        portal.events.push({ type: type, data: data, at: Date.now() });
        list(type, data);
        INVALIDATES[type].forEach(refetch);
      });
    });
  };

  // The seed's "token refresh handling": a new token, then connect again.
  portal.reconnectWith = function (fresh) {
    token = fresh;
    show("connecting", "Connecting");
    portal.socket.connect();
  };

  portal.rest = rest;
  window.portal = portal;
})();
