"""Where the TF.js tools live, and the conversion.

The TensorFlow.js converter (the `tensorflowjs` Python package) cannot be installed beside the workbench: it
needs TensorFlow Decision Forests, which is built against an older TensorFlow than the one the workbench runs.
So it lives in its own virtual environment, with TF.js itself (npm packages, run by Node.js) beside it, in one
folder: `$WORKBENCH_TFJS_HOME`, by default the repository's `tfjs/` (`make tfjs` fills it: `tfjs/.venv` from
`tfjs/requirements.txt`, `tfjs/node_modules` from `tfjs/package-lock.json`). The main install never sees either.
A Keras model crosses over as a SavedModel; the converter writes a TF.js graph model (model.json + weight shards).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import UnsupportedError

QUANTIZE_FLAGS = {"none": [], "uint8": ["--quantize_uint8=*"], "float16": ["--quantize_float16=*"]}
SETUP_HINT = ("run `make tfjs` in the workbench's repository (an isolated converter environment and TF.js's npm "
              "packages, in tfjs/), or point WORKBENCH_TFJS_HOME at a folder holding .venv/bin/tensorflowjs_converter "
              "and node_modules/@tensorflow/tfjs")


def home() -> Path:
    root = os.environ.get("WORKBENCH_TFJS_HOME")
    return Path(root) if root else Path(__file__).resolve().parents[3] / "tfjs"


def converter() -> Path:
    return home() / ".venv" / "bin" / "tensorflowjs_converter"


def node_modules() -> Path:
    return home() / "node_modules"


def missing() -> str | None:
    """Why TF.js cannot run here, or None."""
    lacking = []
    if not converter().exists():
        lacking.append(f"the TF.js converter ({converter()})")
    if shutil.which("node") is None:
        lacking.append("Node.js (`node` on PATH)")
    if not (node_modules() / "@tensorflow" / "tfjs").exists():
        lacking.append(f"TF.js's npm packages ({node_modules()})")
    if not lacking:
        return None
    return f"{' and '.join(lacking)} not found: {SETUP_HINT}"


def convert(saved_model: str, spec: str, quantize: str) -> dict[str, bytes]:
    """A SavedModel folder → the graph model's files by name, converted in the isolated environment."""
    with tempfile.TemporaryDirectory(prefix="wb-tfjs-") as out:
        command = [str(converter()), "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
                   "--signature_name=serving_default", *QUANTIZE_FLAGS[quantize], saved_model, out]
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        except subprocess.TimeoutExpired:
            raise UnsupportedError(spec, "the TF.js converter ran past 10 minutes") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise UnsupportedError(spec, f"the TF.js converter failed: {lines[-1] if lines else done.returncode}")
        paths = sorted(Path(out).iterdir(), key=lambda path: (path.name != "model.json", path.name))
        return {path.name: path.read_bytes() for path in paths}
