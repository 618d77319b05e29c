// The workbench's TF.js runner: one Node.js process per loaded model, driven by the Python handle over stdin /
// stdout, one JSON line per command and per reply. Tensors travel as raw little-endian files, never as JSON.
//   {"cmd": "load", "dir": ..., "backend": "wasm" | "cpu", "threads": n}  -> {"ok", "backend", "version", "simd", "threads"}
//   {"cmd": "input", "path": ..., "shape": [...], "dtype": "float32"}      -> {"ok"}   (kept as the timed input)
//   {"cmd": "run"}                                                          -> {"ok"}   (one inference, read back)
//   {"cmd": "predict", "path": ..., "shape": [...], "out": ...}            -> {"ok", "shape"}  (output written to out)
//   {"cmd": "ping"}                                                         -> {"ok"}   (the round trip alone)
"use strict";
// stdout carries the replies alone: whatever TF.js or a dependency prints goes to stderr
console.log = console.info = console.warn = console.debug = console.error;
const fs = require("fs");
const path = require("path");
const readline = require("readline");

const modules = process.env.WORKBENCH_TFJS_NODE_MODULES;
const need = (name) => require(modules ? path.join(modules, name) : name);
const tf = need("@tensorflow/tfjs");
let model = null;
let timedInput = null;
let dynamic = false;  // control flow (a While loop: LSTM, GRU) only runs through executeAsync

function tensorFrom(file, shape, dtype) {
  const bytes = fs.readFileSync(file);
  const Array_ = dtype === "int32" ? Int32Array : Float32Array;
  const values = new Array_(bytes.buffer, bytes.byteOffset, bytes.length / Array_.BYTES_PER_ELEMENT);
  return tf.tensor(values.slice(), shape, dtype);
}

async function forward(input) {
  let out;
  if (!dynamic) {
    try { out = model.execute(input); }
    catch (err) {
      if (!/executeAsync/.test(String(err && err.message))) throw err;
      dynamic = true;
    }
  }
  if (dynamic) out = await model.executeAsync(input);
  const first = Array.isArray(out) ? out[0] : out;
  const values = first.dataSync();
  const shape = first.shape;
  tf.dispose(out);
  return { values, shape };
}

async function load(msg) {
  if (msg.backend === "wasm") {
    const wasm = need("@tensorflow/tfjs-backend-wasm");
    const dist = path.dirname(require.resolve(modules ? path.join(modules, "@tensorflow/tfjs-backend-wasm")
                                                     : "@tensorflow/tfjs-backend-wasm"));
    wasm.setWasmPaths(dist + path.sep);
    if (msg.threads) wasm.setThreadsCount(msg.threads);
  }
  if (!(await tf.setBackend(msg.backend))) throw new Error(`the ${msg.backend} backend did not initialise`);
  await tf.ready();
  const json = JSON.parse(fs.readFileSync(path.join(msg.dir, "model.json"), "utf8"));
  const specs = [], parts = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) parts.push(fs.readFileSync(path.join(msg.dir, p)));
  }
  const data = Buffer.concat(parts);
  const artifacts = { ...json, weightSpecs: specs,
                      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) };
  model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
  const reply = { ok: true, backend: tf.getBackend(), version: tf.version.tfjs, node: process.version };
  if (msg.backend === "wasm") {
    reply.simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    reply.multithread = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
    reply.threads = need("@tensorflow/tfjs-backend-wasm").getThreadsCount();
  }
  return reply;
}

async function handle(msg) {
  switch (msg.cmd) {
    case "load": return load(msg);
    case "input":
      if (timedInput) timedInput.dispose();
      timedInput = tensorFrom(msg.path, msg.shape, msg.dtype || "float32");
      return { ok: true };
    case "run": await forward(timedInput); return { ok: true };
    case "predict": {
      const input = tensorFrom(msg.path, msg.shape, msg.dtype || "float32");
      const { values, shape } = await forward(input);
      input.dispose();
      const floats = values instanceof Float32Array ? values : Float32Array.from(values);
      fs.writeFileSync(msg.out, Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength));
      return { ok: true, shape };
    }
    case "ping": return { ok: true };
    default: throw new Error(`unknown command ${msg.cmd}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    let reply;
    try { reply = await handle(JSON.parse(line)); }
    catch (err) { reply = { ok: false, error: String(err && err.message || err) }; }
    process.stdout.write(JSON.stringify(reply) + "\n");
  });
});
lines.on("close", () => queue.then(() => process.exit(0)));
