// Preloaded into the conformance suite (node --require): a server that listens on a port
// without naming a host (all interfaces) listens on 127.0.0.1 instead, so the scenario
// servers are reachable from this machine only. The URLs they hand out name "localhost".
//
// The suite reads server.address() right after listen(), so the socket must be bound at
// once: a host given to listen() is resolved asynchronously, a bound handle is not.
"use strict";
const net = require("net");
const { TCP, constants } = process.binding("tcp_wrap");

const listen = net.Server.prototype.listen;

function boundHandle(port) {
  const handle = new TCP(constants.SERVER);
  const err = handle.bind("127.0.0.1", port);
  if (err) {
    handle.close();
    return null;
  }
  return handle;
}

net.Server.prototype.listen = function (...args) {
  let port;
  let rest;
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] === "string") return listen.apply(this, args); // a host was given
    port = Number(first);
    rest = args.slice(1);
  } else if (first === undefined || typeof first === "function") {
    port = 0;
    rest = args;
  } else if (first && typeof first === "object" && first.port !== undefined && first.host === undefined &&
             first.path === undefined && first.fd === undefined && first.handle === undefined) {
    port = Number(first.port);
    rest = args.slice(1);
  } else {
    return listen.apply(this, args);
  }
  const handle = boundHandle(port);
  if (handle === null) return listen.apply(this, args);
  const callback = rest.find((a) => typeof a === "function");
  return callback ? listen.call(this, handle, callback) : listen.call(this, handle);
};
