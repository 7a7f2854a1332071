// Drive codex-runtime from another process: a Node client of `codex-runtime app-server`.
//
// It starts loopback servers (examples/app_server_fixture.py: an MCP server and a
// stand-in model provider), then `python -m codex_runtime app-server --config ...`, and
// speaks Codex's app-server protocol to it over stdio, one JSON object a line:
//   1. initialize, start a thread, run a turn with tool calls and print the text as it streams;
//   2. start a second turn and interrupt it while its tool call is in flight;
//   3. resume the thread, show its turns, and run one more turn;
// then closes the server's stdin: the server exits by itself.
//
//   node examples/app_server_client.mjs          (Node 20+, no npm packages)
//   CODEX_RUNTIME_PYTHON=.venv/bin/python node examples/app_server_client.mjs
//
// The last line printed is a JSON summary (what the client saw and what the servers received).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.CODEX_RUNTIME_PYTHON || "python3";

function lines(stream) {
  const reader = createInterface({ input: stream });
  const queue = [];
  const waiters = [];
  let ended = false;
  reader.on("line", (line) => (waiters.length ? waiters.shift()(line) : queue.push(line)));
  reader.on("close", () => {
    ended = true;
    while (waiters.length) waiters.shift()(null);
  });
  return () => new Promise((resolve) => (queue.length ? resolve(queue.shift()) : ended ? resolve(null) : waiters.push(resolve)));
}

function exited(child) {
  return new Promise((resolve) => child.on("exit", (code) => resolve(code)));
}

class AppServerClient {
  constructor(configPath) {
    this.child = spawn(python, ["-m", "codex_runtime", "app-server", "--config", configPath], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.exit = exited(this.child);
    this.nextId = 0;
    this.pending = new Map();
    this.listeners = [];
    this.messages = [];
    createInterface({ input: this.child.stdout }).on("line", (line) => this.dispatch(JSON.parse(line)));
  }

  dispatch(message) {
    this.messages.push(message);
    if (message.id !== undefined && message.method === undefined) {
      const { resolve, reject } = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) reject(new Error(`${message.error.code}: ${message.error.message}`));
      else resolve(message.result);
      return;
    }
    if (message.id !== undefined && message.method === "mcpServer/elicitation/request") {
      this.write({ id: message.id, result: { action: "decline", content: null } });
      return;
    }
    for (const listener of [...this.listeners]) listener(message);
  }

  write(message) {
    this.child.stdin.write(JSON.stringify(message) + "\n");
  }

  request(method, params) {
    const id = ++this.nextId;
    this.write({ jsonrpc: "2.0", id, method, params });
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  notify(method, params) {
    this.write({ jsonrpc: "2.0", method, params });
  }

  on(listener) {
    this.listeners.push(listener);
    return () => (this.listeners = this.listeners.filter((l) => l !== listener));
  }

  // Resolve when a notification matches, e.g. turn/completed of a thread.
  waitFor(match) {
    return new Promise((resolve) => {
      const off = this.on((message) => {
        if (match(message)) {
          off();
          resolve(message);
        }
      });
    });
  }

  close() {
    this.child.stdin.end();
    return this.exit;
  }
}

async function runTurn(client, threadId, text, { onToolStarted } = {}) {
  let streamed = "";
  let midLine = false; // streamed text leaves the cursor mid-line
  const line = (text) => {
    process.stdout.write(`${midLine ? "\n" : ""}${text}\n`);
    midLine = false;
  };
  const off = client.on((message) => {
    const params = message.params || {};
    if (params.threadId !== threadId) return;
    if (message.method === "item/agentMessage/delta") {
      streamed += params.delta;
      process.stdout.write(params.delta);
      midLine = true;
    } else if (message.method === "item/completed" && params.item.type === "agentMessage") {
      streamed += " ";
      if (midLine) process.stdout.write("\n");
      midLine = false;
    } else if (message.method === "item/started" && params.item.type === "mcpToolCall") {
      line(`  -> ${params.item.server}.${params.item.tool} ${JSON.stringify(params.item.arguments)}`);
      if (onToolStarted) onToolStarted(params);
    } else if (message.method === "item/completed" && params.item.type === "mcpToolCall") {
      line(`  <- ${params.item.tool}: ${params.item.status}`);
    }
  });
  const completed = client.waitFor((m) => m.method === "turn/completed" && m.params.threadId === threadId);
  const { turn } = await client.request("turn/start", { threadId, input: [{ type: "text", text }] });
  const done = await completed;
  off();
  line(`[turn ${turn.id.slice(0, 8)}: ${done.params.turn.status}]`);
  return { id: turn.id, status: done.params.turn.status, text: streamed.trim() };
}

async function main() {
  const fixture = spawn(python, [join(here, "app_server_fixture.py")], { stdio: ["pipe", "pipe", "inherit"] });
  const fixtureExit = exited(fixture);
  const fixtureLine = lines(fixture.stdout);
  const { config } = JSON.parse(await fixtureLine());

  const client = new AppServerClient(config);
  const summary = { turns: [] };
  try {
    const init = await client.request("initialize", { clientInfo: { name: "node-example", version: "1.0.0" } });
    client.notify("initialized");
    console.log(`connected: ${init.userAgent}`);
    const { thread } = await client.request("thread/start", {});
    console.log(`thread ${thread.id} (model ${thread.modelProvider})`);

    console.log("\n> What is the weather in Paris and Oslo?");
    summary.turns.push(await runTurn(client, thread.id, "What is the weather in Paris and Oslo?"));

    console.log("\n> Wait for the slow tool (interrupted while it runs)");
    let interrupting = null;
    summary.turns.push(
      await runTurn(client, thread.id, "Call the slow tool", {
        onToolStarted: (params) => {
          interrupting = client.request("turn/interrupt", { threadId: thread.id, turnId: params.turnId });
        },
      }),
    );
    await interrupting;

    const resumed = await client.request("thread/resume", { threadId: thread.id });
    summary.resumed = resumed.thread.turns.map((t) => t.status);
    console.log(`\nresumed thread ${resumed.thread.id}: turns ${summary.resumed.join(", ")}`);
    console.log("\n> Are you still there?");
    summary.turns.push(await runTurn(client, thread.id, "Are you still there?"));
  } finally {
    summary.app_server_exit = await client.close();
    fixture.stdin.end();
    const received = await fixtureLine();
    summary.servers = received ? JSON.parse(received) : null;
    summary.fixture_exit = await fixtureExit;
  }
  summary.thread_id = client.messages.find((m) => m.method === "thread/started")?.params.thread.id;
  summary.methods = [...new Set(client.messages.filter((m) => m.method).map((m) => m.method))];
  console.log(JSON.stringify(summary));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
