"""The torch handle and the first torch recipes: real models, numbers against thresholds."""

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import ModelError, UnsupportedError
from workbench.recipes import ApplyContext, Pipeline


def _state(handle):
    return {k: v.clone() for k, v in handle.payload.state_dict().items() if isinstance(v, torch.Tensor)}


def _outputs(handle, task):
    return np.concatenate([handle.predict(b) for b in task.batches(256)])


@pytest.mark.parametrize("spec", ["int8-dynamic", "int8-dynamic(per_channel=true)", "prune(0.5)", "fold-bn",
                                  "fold-bn + int8-dynamic", "prune(0.5) + fold-bn + int8-dynamic(engine=qnnpack)"])
def test_recipes_never_mutate_the_baseline(cnn, spec):
    model, task = cnn
    before = _state(model)
    reference = _outputs(model, task)
    new = Pipeline.parse(spec).apply(model, ApplyContext(task=task))
    assert new is not model and new.payload is not model.payload
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(_outputs(model, task), reference)
    assert new.lineage == Pipeline.parse(spec).steps and new.spec == Pipeline.parse(spec).spec


def test_wrapping_copies_the_callers_module():
    net = nn.Sequential(nn.Linear(4, 2))
    net.train()
    handle = wb.wrap(net, np.zeros((1, 4), np.float32))
    assert net.training, "wrapping must not switch the caller's module to eval"
    assert handle.payload is not net and not handle.payload.training


def test_predict_and_serialize(cnn):
    model, task = cnn
    out = model.predict(task.inputs[:5])
    assert out.shape == (5, 10) and out.dtype == np.float32
    assert torch.is_tensor(model.prepare(task.inputs[:2]))
    blob = model.serialize()
    state = torch.load(__import__("io").BytesIO(blob), weights_only=True)
    assert set(state) == set(model.payload.state_dict())


def test_int8_dynamic_on_the_mlp_is_4x_smaller_and_faithful(mlp):
    model, task = mlp
    q = Pipeline.parse("int8-dynamic").apply(model, ApplyContext(task=task))
    assert q.precision == "int8" and q.engine in torch.backends.quantized.supported_engines
    ratio = len(model.serialize()) / len(q.serialize())
    assert ratio >= 3.5, ratio
    agreement = (_outputs(q, task).argmax(1) == _outputs(model, task).argmax(1)).mean()
    assert agreement >= 0.98, agreement
    assert abs(task.score(_outputs(q, task)) - task.score(_outputs(model, task))) <= 0.01
    stats = q.weight_stats()
    assert stats.params == model.weight_stats().params  # packed int8 weights are still counted


def test_per_channel_is_at_least_as_faithful_as_per_tensor(mlp):
    model, task = mlp
    ref = _outputs(model, task)
    errs = {}
    for spec in ("int8-dynamic", "int8-dynamic(per_channel=true)"):
        out = _outputs(Pipeline.parse(spec).apply(model), task)
        errs[spec] = np.abs(out - ref).mean()
    assert errs["int8-dynamic(per_channel=true)"] <= errs["int8-dynamic"] * 1.05


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.8])
def test_prune_reaches_the_asked_sparsity(cnn, sparsity):
    model, _ = cnn
    pruned = Pipeline.parse(f"prune({sparsity})").apply(model)
    assert pruned.weight_stats().sparsity == pytest.approx(sparsity, abs=0.01)
    assert not any(hasattr(m, "weight_orig") for m in pruned.payload.modules()), "pruning must be made permanent"
    assert len(pruned.serialize()) == pytest.approx(len(model.serialize()), rel=0.01)


def test_fold_bn_is_exact_and_removes_batchnorm(cnn):
    model, task = cnn
    folded = Pipeline.parse("fold-bn").apply(model)
    assert folded.fused
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.payload.modules())
    assert np.abs(_outputs(folded, task) - _outputs(model, task)).max() < 1e-4


def test_int8_dynamic_on_a_conv_only_model_is_unsupported_naming_the_layers():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    handle = wb.wrap(net, np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(UnsupportedError) as info:
        Pipeline.parse("int8-dynamic").apply(handle)
    assert "2 Conv2d" in str(info.value) and "int8-static" in str(info.value)


def test_fold_bn_without_batchnorm_is_unsupported(mlp):
    model, _ = mlp
    with pytest.raises(UnsupportedError, match="no BatchNorm"):
        Pipeline.parse("fold-bn").apply(model)


def test_fold_bn_on_an_untraceable_model_is_unsupported():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.bn(self.conv(x))
            return self.conv(x)

    handle = wb.wrap(Branchy(), np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(UnsupportedError, match="torch.fx cannot trace"):
        Pipeline.parse("fold-bn").apply(handle)


def test_unavailable_engine_is_unsupported(cnn, monkeypatch):
    model, _ = cnn
    from workbench.backends.torch import quantize

    monkeypatch.setattr(quantize, "supported_engines", lambda: ["qnnpack"])
    with pytest.raises(UnsupportedError, match="not built into this torch"):
        Pipeline.parse("int8-dynamic(engine=fbgemm)").apply(model)


def test_flops_weight_stats_and_peak_memory_are_exact_on_a_linear():
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    handle = wb.wrap(net, np.zeros((1, 64), np.float32))
    batch = np.zeros((8, 64), np.float32)
    assert handle.flops(batch) == 2 * 8 * (64 * 32 + 32 * 10)
    stats = handle.weight_stats()
    assert stats.params == 64 * 32 + 32 + 32 * 10 + 10
    assert stats.prunable == 64 * 32 + 32 * 10
    assert stats.sparsity == 0.0
    # at least the two activations of the batch are alive at some point
    assert handle.peak_memory(batch) >= 8 * 32 * 4


def test_bad_batches_and_outputs_raise_clear_errors():
    handle = wb.wrap(nn.Linear(4, 2), np.zeros((1, 4), np.float32))
    with pytest.raises(ModelError, match="NumPy array or a tensor"):
        handle.predict("not an array")

    class Dicty(nn.Module):
        def forward(self, x):
            return {"embedding": x}

    with pytest.raises(ModelError, match="make forward return a tensor"):
        wb.wrap(Dicty(), np.zeros((1, 4), np.float32)).predict(np.zeros((1, 4), np.float32))


def test_non_models_are_refused_with_what_is_accepted():
    for thing in (object(), "model.pt", 42, {"weights": 1}):
        with pytest.raises(ModelError, match="torch.nn.Module"):
            wb.wrap(thing)


def test_int4_weight_only_packs_the_linear_layers_that_fit_and_names_the_rest(mlp, cnn):
    """The recipe added through the config + handler path of ARCHITECTURE.md: int4 groups on torchao's CPU kernel."""
    model, task = mlp
    before = {k: v.clone() for k, v in model.payload.state_dict().items()}
    results = wb.Study(model, task, timing=wb.TimingConfig(min_time_s=0.05, min_runs=10, warmup_runs=2),
                       measure_memory=False).run(["int4-weight-only", "int4-weight-only(group_size=128)"],
                                                 progress=False)
    rows = results.frame.set_index("pipeline")
    row, base = rows.loc["int4-weight-only"], rows.loc["baseline"]
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "int4" and row["fidelity"] >= 0.98 and row["metric_delta"] >= -0.01
    assert row["fidelity_cosine"] >= 0.99
    assert row["size_bytes"] < 0.2 * base["size_bytes"]          # 4-bit weights + group scales, vs fp32
    assert row["flops"] == base["flops"]                           # counted on the float graph
    assert "stay bf16" in row["notes"] and "runs in bf16" in row["notes"]  # the 1024→10 head does not fit
    assert rows.loc["int4-weight-only(group_size=128)", "status"] == "ok"
    after = model.payload.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == torch.float32 for k in before)  # untouched
    with pytest.raises(wb.ParameterError, match="32, 64, 128"):
        Pipeline.parse("int4-weight-only(group_size=48)")
    cnn_model, cnn_task = cnn
    with pytest.raises(UnsupportedError, match="no Linear layer fits the int4 kernel"):
        Pipeline.parse("int4-weight-only").apply(cnn_model, ApplyContext(task=cnn_task))
