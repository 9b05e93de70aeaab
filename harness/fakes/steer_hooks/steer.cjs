// Resolver-level steering for Node.js handlers, loaded with NODE_OPTIONS="--require <this file>" by the harness
// (harness/fakes/steering.py, `--steer`). Node before 24 ignores HTTPS_PROXY in fetch, ws and http(s), so the
// connection itself is steered: every TCP connection goes through net.Socket.prototype.connect (net.connect,
// tls.connect, http(s) agents, undici's fetch, ws, axios), and there a vendor host the harness fakes is sent to
// its forwarder on 127.0.0.1; TLS keeps the vendor's name (SNI and certificate check use the host asked for,
// which the run's certificate names). A connection to any other host is not made: it fails as an unresolvable
// name would (ENOTFOUND), and the harness is told the host (a CONNECT to its proxy, which refuses and journals
// it). Loopback, Unix sockets and connections given a ready socket are left alone. Nothing is resolved by DNS.
"use strict";

const net = require("net");

const config = JSON.parse(process.env.RTZR_TESTKIT_STEER || "null");
if (config && config.hosts && config.proxy) {
  const [proxyHost, proxyPort] = [config.proxy.slice(0, config.proxy.lastIndexOf(":")),
    Number(config.proxy.slice(config.proxy.lastIndexOf(":") + 1))];
  const LOCAL = new Set(["localhost", "0.0.0.0", "::", "::1"]);
  const isLocal = (host) => LOCAL.has(host) || /^127\./.test(host) || host.endsWith(".localhost");
  const original = net.Socket.prototype.connect;

  const tell = (host, port, then) => {
    // the harness journals the refusal by name ("the handler tried to reach <host>: not faked, refused") before
    // the client hears of it, so a handler that exits on the error has still been seen trying
    const report = original.call(new net.Socket(), { host: proxyHost, port: proxyPort });
    let told = false;
    const done = () => { if (!told) { told = true; report.destroy(); then(); } };
    report.on("error", done).on("close", done).on("data", done);
    report.on("connect", () => report.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
  };

  net.Socket.prototype.connect = function connect(...args) {
    const normalized = Array.isArray(args[0]) ? args[0] : net._normalizeArgs(args);
    const [options, callback] = normalized;
    if (!options || options.path || options.port === undefined) return original.apply(this, args);
    const host = String(options.host || "localhost").toLowerCase().replace(/\.$/, "").replace(/^\[|\]$/g, "");
    if (isLocal(host)) return original.apply(this, args);
    const port = config.hosts[host];
    if (port !== undefined) {
      const steered = { ...options, host: "127.0.0.1", port, family: 4 };
      return callback ? original.call(this, steered, callback) : original.call(this, steered);
    }
    const error = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host} (not faked: refused by the harness)`),
      { code: "ENOTFOUND", errno: -3008, syscall: "getaddrinfo", hostname: host });
    this.connecting = true; // as a socket waiting on its lookup is
    tell(host, options.port, () => this.destroy(error));
    return this;
  };
}
