"""The TF.js model handle: a graph model (model.json + weight shards) run by TensorFlow.js in a Node.js process.

One Node.js process per handle, started on first use and stopped with the handle (or the interpreter): it loads
the model once, keeps the timed batch as a tensor, and answers one JSON line per command (`serve.cjs`). A timed
call is one round trip over the process's pipes; the round trip alone is measured at start and named in the notes.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelError
from ...model import ModelHandle, WeightStats
from . import tools

SERVE = Path(__file__).with_name("serve.cjs")
RUN = b'{"cmd":"run"}\n'
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def _stop(process: subprocess.Popen | None, scratch: str) -> None:
    if process is not None:
        try:
            process.stdin.close()  # serve.cjs exits when its input ends
            process.wait(timeout=5)
        except Exception:
            process.kill()
            process.wait()
        process.stdout.close()
    shutil.rmtree(scratch, ignore_errors=True)


class _Node:
    """A Node.js process serving one loaded model."""

    def __init__(self, files: dict[str, bytes], backend: str, threads: int | None):
        self.scratch = tempfile.mkdtemp(prefix="wb-tfjs-")
        self.process: subprocess.Popen | None = None
        self._finalizer = weakref.finalize(self, _stop, None, self.scratch)
        try:
            model_dir = os.path.join(self.scratch, "model")
            os.mkdir(model_dir)
            for name, data in files.items():
                Path(model_dir, name).write_bytes(data)
            self.log = tempfile.TemporaryFile(dir=self.scratch)
            env = {**os.environ, "WORKBENCH_TFJS_NODE_MODULES": str(tools.node_modules())}
            # its own session: a notebook's interrupt (sent to the kernel's process group) leaves it running; it
            # ends when its input does, so it never outlives this process
            self.process = subprocess.Popen(["node", str(SERVE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.log, env=env, start_new_session=True)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _stop, self.process, self.scratch)
            self.info = self.call(cmd="load", dir=model_dir, backend=backend, threads=threads or 1)
            shutil.rmtree(model_dir)  # loaded: the weights are in the process now
            self.info["round_trip_us"] = self._round_trip_us()
        except BaseException:
            self.stop()
            raise

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _reply(self) -> bytes:
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise ModelError(f"the TF.js process (Node.js) ended with exit code {self.process.wait()}: "
                             + (" / ".join(tail) or "it printed nothing"))
        return line

    def _exchange(self, line: bytes) -> bytes:
        """One command, one reply. Anything that breaks the exchange part-way (an interrupt, a dead process)
        stops the process, so no later command can read this one's reply; the handle starts a new one."""
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
            return self._reply()
        except ModelError:
            self.stop()
            raise
        except BaseException as exc:
            self.stop()
            if isinstance(exc, OSError):
                raise ModelError(f"the TF.js process (Node.js) went away ({type(exc).__name__}: {exc})") from None
            raise

    def call(self, **message: Any) -> dict[str, Any]:
        reply = json.loads(self._exchange((json.dumps(message) + "\n").encode()))
        if not reply.get("ok"):
            raise ModelError(f"TF.js: {reply.get('error')}")
        return reply

    def run(self) -> None:
        line = self._exchange(RUN)
        if not line.startswith(b'{"ok":true'):
            raise ModelError(f"TF.js: {json.loads(line).get('error')}")

    def _round_trip_us(self, n: int = 200) -> float:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            self.call(cmd="ping")
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e6

    def _write(self, x: np.ndarray) -> str:
        path = os.path.join(self.scratch, "input.bin")
        np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<"), copy=False).tofile(path)
        return path

    def set_input(self, x: np.ndarray) -> None:
        self.call(cmd="input", path=self._write(x), shape=list(x.shape), dtype=_js_dtype(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = os.path.join(self.scratch, "output.bin")
        reply = self.call(cmd="predict", path=self._write(x), shape=list(x.shape), dtype=_js_dtype(x), out=out)
        return np.fromfile(out, dtype="<f4").reshape(reply["shape"])

    def stop(self) -> None:
        self._finalizer()


def _js_dtype(x: np.ndarray) -> str:
    return "int32" if np.issubdtype(x.dtype, np.integer) else "float32"


class TfjsModel(ModelHandle):
    """`payload`: the graph model's files by name, model.json first. `backend` is TF.js's: wasm (XNNPACK
    kernels compiled to WebAssembly) or cpu (plain JavaScript). `quantize` is how the weights are stored
    (none, uint8, float16): TF.js dequantizes them to float32 when it loads the model, so it computes in fp32."""

    format = "tfjs"
    runtime = "tfjs"

    def __init__(self, files: dict[str, bytes], source: ModelHandle | None, *, backend: str = "wasm",
                 quantize: str = "none", notes: tuple[str, ...] = ()):
        self.payload, self.source, self.backend, self.quantize = files, source, backend, quantize
        self.framework = source.framework if source is not None else "tfjs"
        self.example_input = source.example_input if source is not None else None
        self.precision, self.fused, self.notes = "fp32", True, notes
        self._node: _Node | None = None
        self._threads: int | None = None

    def __getstate__(self) -> dict:
        """The Node.js process stays with the process that started it: a worker starts its own."""
        return {**self.__dict__, "_node": None}

    def node(self) -> _Node:
        if self._node is None or not self._node.alive:
            self._node = _Node(self.payload, self.backend, self._threads)
        return self._node

    @property
    def engine(self) -> str:  # type: ignore[override]
        info = self.node().info
        kernels = (f"wasm backend{', SIMD' if info.get('simd') else ''}, {info.get('threads', 1)} thread"
                   if info["backend"] == "wasm" else "cpu backend (plain JavaScript)")
        return f"TF.js {info['version']} {kernels}, in Node.js {info['node']}"

    def timing_note(self) -> str:
        info = self.node().info
        note = (f"timed in Node.js: each call is a pipe round trip to the TF.js process, {info['round_trip_us']:.0f} "
                "µs of it the round trip alone (measured at start)")
        if info["backend"] == "wasm" and not info.get("multithread"):
            note += "; TF.js's wasm backend has no threads in Node.js (its threaded build needs a browser's "\
                    "cross-origin isolation), so it ran on 1 thread whatever the study's threads"
        return note

    def prepare(self, batch: Any) -> np.ndarray:
        x = (self.source or super()).numpy_inputs(batch)
        if isinstance(x, (dict, tuple, list)):
            raise ModelError("the TF.js runner takes a model with one input tensor")
        return np.ascontiguousarray(np.asarray(x, dtype=np.float32))

    def predict(self, batch: Any) -> np.ndarray:
        return self.node().predict(self.prepare(batch))

    def runner(self, batch: Any) -> Callable[[], object]:
        node = self.node()
        node.set_input(self.prepare(batch))
        return node.run

    def serialize(self) -> bytes:
        """model.json, then the weight shards (what a web page fetches)."""
        return b"".join(self.payload.values())

    def weights(self) -> list[np.ndarray]:
        """Every weight as TF.js loads it, read with the manifest's specs: uint8-stored weights dequantized
        (q · scale + min, where the converter's range holds 0 exactly: what dequantizes to within half a step
        of 0 is 0), float16-stored ones as float16."""
        manifest = json.loads(self.payload["model.json"])["weightsManifest"]
        arrays = []
        for group in manifest:
            data = b"".join(self.payload[path] for path in group["paths"])
            offset = 0
            for spec in group["weights"]:
                quantization = spec.get("quantization")
                dtype = np.dtype(QUANTIZED[quantization["dtype"]] if quantization else DTYPES[spec["dtype"]])
                count = int(np.prod(spec["shape"])) if spec["shape"] else 1
                array = np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=count,
                                      offset=offset).reshape(spec["shape"])
                offset += count * dtype.itemsize
                if quantization and "scale" in quantization:
                    scale = float(quantization["scale"])
                    array = array.astype(np.float32) * scale + float(quantization["min"])
                    array[np.abs(array) < scale / 2] = 0.0
                arrays.append(array)
        return arrays

    def weight_stats(self) -> WeightStats:
        return WeightStats.from_arrays(a for a in self.weights() if a.size > 1 and a.dtype.kind == "f")

    def helper_processes(self) -> tuple[int, ...]:
        return (self._node.process.pid,) if self._node is not None and self._node.alive else ()

    def stop(self) -> None:
        """Stop the Node.js process (a later call starts a new one)."""
        if self._node is not None:
            self._node.stop()
            self._node = None
