"""The full PyTorch recipe set on the digits models: fidelity, accuracy after calibration or fine-tuning,
the unsupported cases, and the device-aware notes. Thresholds are stated where they are asserted."""

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import IncompatibleRecipesError, ParameterError, UnsupportedError
from workbench.recipes import ApplyContext, Pipeline

from .conftest import FAST

CNN_RECIPES = [
    "fp16", "bf16", "autocast", "autocast(fp16)", "int8-static", "int8-static(engine=qnnpack)",
    "int8-static(engine=fbgemm)", "int8-weight-only", "qat", "prune(0.5)", "prune(0.8)",
    "prune(0.5, pattern=channel)", "prune(pattern=2:4)", "fuse", "channels-last", "torchscript",
    "torchscript(mode=script)", "executorch", "prune(0.5, pattern=channel) + fuse + int8-static",
    "prune(0.5) + qat", "fold-bn + channels-last + torchscript",
]
INT8 = ["int8-static", "int8-static(engine=qnnpack)", "int8-static(engine=fbgemm)", "qat", "int8-dynamic",
        "prune(0.5, pattern=channel) + fuse + int8-static", "prune(0.5) + qat"]
SPARSE = ["prune(0.5)", "prune(0.8)", "prune(0.5, pattern=channel)", "prune(pattern=2:4)", "prune(0.5) + qat"]
MAX_ACCURACY_DROP = 0.01  # one point
STACKED_LOSSY = {"prune(0.5, pattern=channel) + fuse + int8-static"}


@pytest.fixture(scope="session")
def recipe_rows(cnn_study):
    results = cnn_study.run(CNN_RECIPES + ["int8-dynamic"], progress=False)
    return results.frame.set_index("pipeline")


def _notes(row) -> str:
    return row["notes"] if isinstance(row["notes"], str) else ""


def _sqnr_db(out: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / max(((ref - out) ** 2).sum(), 1e-30)))


@pytest.mark.parametrize("spec", CNN_RECIPES)
def test_every_recipe_runs_on_the_cnn(recipe_rows, spec):
    canonical = Pipeline.parse(spec).spec
    row = recipe_rows.loc[canonical]
    assert row["status"] == "ok", row["error"]
    assert row["latency_ms_p50"] > 0 and row["size_bytes"] > 0


@pytest.mark.parametrize("spec", [s for s in CNN_RECIPES if s not in SPARSE and "channel" not in s])
def test_fidelity_to_fp32_above_98_percent_top1(recipe_rows, spec):
    assert recipe_rows.loc[Pipeline.parse(spec).spec, "fidelity"] >= 0.98


@pytest.mark.parametrize("spec", sorted(set(INT8 + SPARSE)))
def test_int8_and_sparse_recipes_lose_at_most_one_point(recipe_rows, spec):
    row = recipe_rows.loc[Pipeline.parse(spec).spec]
    # a stack of two lossy steps (channel pruning, then post-training int8 with no further tuning) may add up
    allowed = 1.5 * MAX_ACCURACY_DROP if spec in STACKED_LOSSY else MAX_ACCURACY_DROP
    assert row["metric_delta"] >= -allowed, (spec, row["metric"], row["notes"])


def test_int8_static_sqnr_and_size(cnn, cnn_study):
    model, task = cnn
    ref = cnn_study.reference
    for spec, min_db in (("int8-static", 20.0), ("qat", 15.0), ("int8-dynamic", 25.0)):
        out = np.concatenate([cnn_study.handle(spec).predict(b) for b in task.batches(256)])
        assert _sqnr_db(out, ref) >= min_db, spec
    assert len(cnn_study.handle("int8-static").serialize()) < 0.4 * len(model.serialize())


def test_pruning_patterns_are_what_they_say(cnn_study, recipe_rows):
    two_four = cnn_study.handle("prune(pattern=2:4)").payload
    for layer in two_four.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight[0].numel() % 4 == 0:
            groups = layer.weight.detach().reshape(layer.weight.shape[0], -1, 4)
            assert ((groups != 0).sum(-1) <= 2).all()
    assert recipe_rows.loc["prune(0.8)", "sparsity"] == pytest.approx(0.8, abs=0.01)
    channel = recipe_rows.loc["prune(0.5, pattern=channel)"]
    base = recipe_rows.loc["baseline"]
    assert channel["params"] < 0.5 * base["params"] and channel["size_bytes"] < 0.5 * base["size_bytes"]
    assert channel["flops"] < 0.5 * base["flops"]  # the layers really shrank


def test_finetune_recovers_accuracy_and_zero_skips_it(cnn_study, recipe_rows):
    tuned = recipe_rows.loc["prune(0.8)", "metric"]
    raw = cnn_study.trial("prune(0.8, finetune=0)")["metric"]
    assert tuned > raw + 0.02
    assert "fine-tuned 9 epoch" in recipe_rows.loc["prune(0.8)", "notes"]


def test_qat_after_prune_keeps_the_zeros(recipe_rows):
    assert recipe_rows.loc["prune(0.5) + qat", "sparsity"] == pytest.approx(0.5, abs=0.02)
    assert "zeros kept" in recipe_rows.loc["prune(0.5) + qat", "notes"]


def test_precision_rows_and_device_notes(recipe_rows, device):
    assert recipe_rows.loc["fp16", "precision"] == "fp16" and recipe_rows.loc["bf16", "precision"] == "bf16"
    assert recipe_rows.loc["fp16", "size_bytes"] < 0.6 * recipe_rows.loc["baseline", "size_bytes"]
    assert recipe_rows.loc["autocast(bf16)", "precision"] == "amp-bf16"
    for precision in ("fp16", "bf16"):
        notes = _notes(recipe_rows.loc[precision])
        if device.is_accelerated(precision):
            assert "emulated" not in notes
        else:
            assert f"{precision} is emulated on this CPU" in notes
    assert "quantized" not in _notes(recipe_rows.loc["fp16"])


def test_isa_aware_int8_defaults(recipe_rows, device):
    notes = recipe_rows.loc["int8-static", "notes"]
    assert f"engine {device.recommended_quantized_engine}" in notes
    assert ("7-bit" in notes) == device.int8_reduce_range


def test_runtime_rows(recipe_rows):
    assert recipe_rows.loc["torchscript(mode=trace)" if "torchscript(mode=trace)" in recipe_rows.index
                           else "torchscript", "runtime"] == "torchscript"
    assert recipe_rows.loc["executorch", "runtime"] == "executorch"
    assert recipe_rows.loc["executorch", "fidelity_max_abs"] < 1e-3
    assert recipe_rows.loc["torchscript", "params"] == recipe_rows.loc["baseline", "params"]
    assert recipe_rows.loc["fuse", "fused"] and recipe_rows.loc["channels-last", "fidelity_max_abs"] < 1e-4


def test_torchscript_artifact_loads_and_matches(cnn, cnn_study):
    import io

    model, task = cnn
    loaded = torch.jit.load(io.BytesIO(cnn_study.handle("torchscript").serialize()))
    x = model.prepare(task.sample(16))
    assert (loaded(x) - model.payload(x)).abs().max() < 1e-4


@pytest.mark.slow
def test_compile_reports_compile_time_as_first_call(cnn):
    model, task = cnn
    study = wb.Study(model, task, timing=FAST, measure_memory=False)
    row = study.run(["compile"], progress=False).row("compile")
    assert row["status"] == "ok", row["error"]
    assert row["runtime"] == "inductor" and row["fidelity_max_abs"] < 1e-3
    assert row["first_call_ms"] > 20 * row["latency_ms_p50"]  # compilation is not in the steady state
    assert "first_call_ms is the compile time" in row["notes"]


def test_mlp_recipes(mlp):
    model, task = mlp
    study = wb.Study(model, task, timing=FAST, measure_memory=False)
    rows = study.run(["int8-static", "int8-weight-only", "prune(0.5)", "prune(0.5) + int8-dynamic",
                      "prune(0.5, pattern=channel)"], progress=False).frame.set_index("pipeline")
    assert (rows["status"] == "ok").all(), rows["error"]
    assert (rows["metric_delta"] >= -MAX_ACCURACY_DROP).all(), rows[["metric", "notes"]]
    assert rows.loc["int8-weight-only", "size_bytes"] < 0.3 * rows.loc["baseline", "size_bytes"]
    assert rows.loc["prune(0.5) + int8-dynamic", "sparsity"] == pytest.approx(0.5, abs=0.01)


# -- what cannot work says so ----------------------------------------------------------------------------

class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.fixture(scope="module")
def lstm_study():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5, 8)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    task = wb.tasks.Classification(x, y, train=(x, y))
    return wb.Study(_Recurrent(), task, timing=FAST, measure_memory=False)


@pytest.mark.parametrize("spec, fragment", [
    ("fuse", "no BatchNorm layer"),
    ("channels-last", "no Conv2d layer"),
    ("fold-bn", "no BatchNorm"),
    ("tf32", "this model runs on the CPU"),
    ("prune(pattern=2:4) + fp16 + sparse-kernels", "compute capability 8.0+"),
])
def test_unsupported_rows_name_the_layer(lstm_study, spec, fragment):
    row = lstm_study.run([spec], progress=False).row(spec)
    assert row["status"] == "unsupported"
    assert fragment in row["error"]


@pytest.mark.parametrize("spec", ["int8-static", "qat"])
def test_static_int8_quantizes_around_a_recurrent_layer_and_keeps_it_float(lstm_study, spec):
    """No static int8 kernel for an LSTM: it stays fp32 (the row says so) and the head is quantized."""
    row = lstm_study.run([spec], progress=False).row(spec)
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "int8" and row["fidelity_cosine"] >= 0.95
    assert "kept in fp32" in row["notes"] and "LSTM 'rnn'" in row["notes"]
    quantized = lstm_study.handle(spec).payload
    assert isinstance(quantized.get_submodule("rnn"), nn.LSTM)
    assert type(quantized.get_submodule("head")).__module__.startswith("torch.ao.nn.quantized")


def test_static_int8_on_attention_alone_is_unsupported_naming_it():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x)[0]

    x = np.random.default_rng(0).standard_normal((8, 4, 8)).astype(np.float32)
    study = wb.Study(Attention(), wb.tasks.Unlabelled(x), timing=FAST, measure_memory=False)
    row = study.run(["int8-static"], progress=False).row("int8-static")
    assert row["status"] == "unsupported" and "MultiheadAttention 'attention'" in row["error"]
    assert "use int8-dynamic" in row["error"]


def test_int8_dynamic_does_take_the_lstm(lstm_study):
    row = lstm_study.run(["int8-dynamic"], progress=False).row("int8-dynamic")
    assert row["status"] == "ok" and row["fidelity"] >= 0.9


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kwargs", [{}, {"key_padding_mask": True}, {"attn_mask": True}, {"attn_mask": "float"},
                                    {"attn_mask": "3d"}, {"attn_mask": True, "is_causal": True},
                                    {"need_weights": False}, {"average_attn_weights": False}, {"kdim": 16}])
def test_split_attention_is_multihead_attention(batch_first, kwargs):
    """int8-dynamic's view of nn.MultiheadAttention (Q, K, V and output projections as Linear modules) gives the
    module's own outputs and weights, batch-first or not, with padding and attention masks."""
    from workbench.backends.torch.attention import SplitAttention

    torch.manual_seed(0)
    kwargs = dict(kwargs)
    kdim = kwargs.pop("kdim", None)
    attention = nn.MultiheadAttention(32, 4, batch_first=batch_first, kdim=kdim, vdim=kdim).eval()
    split = SplitAttention(attention)
    q, kv = torch.randn(5, 12, 32), torch.randn(5, 7, kdim or 32)
    if not batch_first:
        q, kv = q.transpose(0, 1), kv.transpose(0, 1)
    if kwargs.pop("key_padding_mask", False):
        kwargs["key_padding_mask"] = torch.zeros(5, 7, dtype=torch.bool).index_fill_(1, torch.tensor([5, 6]), True)
    kind = kwargs.pop("attn_mask", False)
    if kind:
        mask = torch.ones(12, 7, dtype=torch.bool).tril().logical_not()
        if kind == "float":
            mask = torch.zeros(12, 7).masked_fill(mask, -1e4) + 0.1 * torch.randn(12, 7)
        elif kind == "3d":
            mask = mask.expand(5 * 4, 12, 7)
        kwargs["attn_mask"] = mask
    with torch.no_grad():
        (out, weights), (split_out, split_weights) = attention(q, kv, kv, **kwargs), split(q, kv, kv, **kwargs)
    assert (out - split_out).abs().max() < 1e-5
    assert (weights is None) == (split_weights is None)
    if weights is not None:
        assert (weights - split_weights).abs().max() < 1e-5


def test_split_attention_takes_one_unbatched_sequence():
    from workbench.backends.torch.attention import SplitAttention

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4).eval()
    x = torch.randn(6, 32)
    with torch.no_grad():
        out, weights = attention(x, x, x)
        split_out, split_weights = SplitAttention(attention)(x, x, x)
    assert split_out.shape == (6, 32) and (out - split_out).abs().max() < 1e-5
    assert (weights - split_weights).abs().max() < 1e-5


def test_int8_dynamic_quantizes_a_transformer_encoder_and_keeps_its_outputs():
    """The issue-21 failure: after dynamic quantization the encoder layer's fast path read `.weight.device` of a
    quantized Linear. Now the attention projections are int8 too and the encoder runs on its slow path."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)).eval()
    x = np.random.default_rng(0).standard_normal((16, 6, 32)).astype(np.float32)
    study = wb.Study(model, wb.tasks.Unlabelled(x), timing=FAST, measure_memory=False)
    row = study.run(["int8-dynamic", "int8-dynamic(exclude=0.layers.0.self_attn)"], progress=False).frame.set_index("pipeline")
    assert set(row["status"]) == {"ok"}
    assert row.loc["int8-dynamic", "fidelity_cosine"] >= 0.99
    handle = study.handle("int8-dynamic")
    quantized = {n for n, m in handle.payload.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized")}
    assert {"0.layers.0.self_attn.q_proj", "0.layers.1.self_attn.out_proj", "0.layers.1.linear2"} <= quantized
    assert "MultiheadAttention layer(s) run their Q, K, V" in " ".join(handle.notes)
    kept = study.handle("int8-dynamic(exclude=0.layers.0.self_attn)").payload
    assert isinstance(kept.get_submodule("0.layers.0.self_attn"), nn.MultiheadAttention)


@pytest.mark.parametrize("spec, fragment", [
    ("int8-static + fp16", "already sets the precision"),
    ("fp16 + int8-dynamic", "already sets the precision"),
    ("compile + torchscript", "two runtimes"),
    ("torchscript + fuse", "rewrites the eager model"),
    ("int8-static + prune(0.5)", "must come before"),
    ("fp16 + sparse-kernels", "needs 2:4-pruned weights"),
])
def test_impossible_combinations_say_why_before_running(spec, fragment):
    with pytest.raises(IncompatibleRecipesError, match=fragment):
        Pipeline.parse(spec)


@pytest.mark.parametrize("spec, fragment", [
    ("prune(0.3, pattern=2:4)", "0.5 with pattern=2:4"),
    ("prune(0.5, pattern=block)", "unstructured, channel, 2:4"),
    ("compile(fast)", "default, reduce-overhead"),
    ("autocast(fp8)", "bf16, fp16"),
    ("qat(epochs=0)", "[1, 1000]"),
    ("int8-static(calibration=0)", "[1, 1000000]"),
    ("torchscript(mode=onnx)", "trace, script"),
])
def test_bad_parameters_of_the_new_recipes(spec, fragment):
    with pytest.raises(ParameterError) as info:
        Pipeline.parse(spec)
    assert fragment in str(info.value)


def test_recipes_needing_data_without_a_task(cnn):
    model, _ = cnn
    with pytest.raises(UnsupportedError, match="calibrat"):
        Pipeline.parse("int8-static").apply(model)
    with pytest.raises(UnsupportedError, match="labelled training data"):
        Pipeline.parse("qat").apply(model, ApplyContext(task=wb.tasks.Unlabelled(np.zeros((4, 1, 8, 8), np.float32))))
    pruned = Pipeline.parse("prune(0.5)").apply(model)  # no task: pruned, not fine-tuned, and it says so
    assert "not fine-tuned" in " ".join(pruned.notes)
