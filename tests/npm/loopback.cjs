// Preloaded with `node --require`: pin host-less listen() calls to 127.0.0.1 (npm servers
// listen on all interfaces by default) and report the bound port on stderr.
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || typeof args[0] === "string") {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  } else if (args[0] && typeof args[0] === "object" && !("host" in args[0]) && !("path" in args[0])) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  this.once("listening", () => {
    const address = this.address();
    if (address && typeof address === "object") process.stderr.write(`LOOPBACK_PORT=${address.port}\n`);
  });
  return listen.apply(this, args);
};
