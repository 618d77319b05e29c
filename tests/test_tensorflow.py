"""The TensorFlow path: Keras 3 / tf_keras models, TF-MOT through the bridge, TFLite in LiteRT, XLA, edge checks.

One digits-keras study is measured once per session and shared; bad-input models are tiny and built here.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import workbench as wb
from tests.conftest import FAST

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

TF_PIPELINES = [
    "tflite", "tflite(xnnpack=false)", "int8-dynamic", "fp16", "int8-static", "xla",
    "prune(0.8)", "prune(0.8) + int8-static", "cluster(16)", "qat + tflite", "prune(0.8, schedule=constant)",
    "prune(pattern=2:4)",
    "prune(0.8) + cluster(16) + qat + tflite", "int8-static + edgetpu", "tflite + edgetpu",
    "int8-static + tf-micro(flash_kb=512, ram_kb=64)", "int8-static + tf-micro(flash_kb=64, ram_kb=64)", "tfjs",
    "bf16", "bf16 + xla", "bf16 + tflite",
    "prune(0.8) + tflite", "prune(0.8) + tflite(sparse=true)", "int8-static + tflite(sparse=true)",
]


@pytest.fixture(scope="session")
def keras_zoo():
    return wb.zoo.load("digits-keras")


@pytest.fixture(scope="session")
def tf_study(keras_zoo):
    model, task = keras_zoo
    return wb.Study(model, task, timing=FAST)


@pytest.fixture(scope="session")
def tf_results(tf_study):
    return tf_study.run(TF_PIPELINES, progress=False)


@pytest.fixture(scope="session")
def rows(tf_results):
    return tf_results.frame.set_index("pipeline")


@pytest.fixture(scope="session")
def digits_data():
    from workbench.zoo.digits_keras import data

    d = data()
    return d["train"], d["val"]


def _task(digits_data):
    (x, y), (xv, yv) = digits_data
    return wb.tasks.Classification(xv, yv, train=(x, y))


# -- the zoo model and the handle -----------------------------------------------------------------

def test_digits_keras_is_a_trained_keras3_cnn_on_the_shared_split(keras_zoo):
    model, task = keras_zoo
    assert model.framework == "keras" and model.flavor == "keras3"
    assert task.inputs.shape[1:] == (8, 8, 1) and len(task) == 359  # the same 20% val split as digits-cnn
    accuracy = task.score(model.predict(task.inputs))
    assert accuracy >= 0.98
    assert 200_000 < model.weight_stats().params < 300_000


def test_the_handle_owns_a_copy_and_serializes_without_optimizer_state(keras_zoo):
    from workbench.backends.keras import KerasModel

    model, task = keras_zoo
    original = model.payload
    handle = KerasModel(original, task.inputs[:1])
    assert handle.payload is not original
    np.testing.assert_allclose(handle.predict(task.inputs[:16]), model.predict(task.inputs[:16]), atol=1e-5)
    blob = handle.serialize()
    params = handle.weight_stats().params
    assert params * 4 < len(blob) < params * 4 * 1.2  # the weights once, not Adam's two extra copies


def test_wrap_recognises_keras_and_tf_keras_models():
    k3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    k2 = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(4,))])
    assert wb.wrap(k3).flavor == "keras3"
    assert wb.wrap(k2).flavor == "tf_keras"
    assert wb.wrap(tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])).framework == "keras"


# -- one study: at least 8 TF pipelines, side by side with torch rows ---------------------------------

def test_tf_pipelines_share_one_results_frame_and_chart_with_torch_rows(tf_results, cnn_results):
    ok = tf_results.frame[tf_results.frame["status"] == "ok"]
    assert len(ok) - 1 >= 8  # besides the baseline
    both = wb.Results.concat([tf_results, cnn_results])
    assert set(both.frame["framework"]) == {"keras", "torch"}
    assert both.frame["is_baseline"].sum() == 2
    chart = wb.charts.tradeoff(both.frame).to_dict()
    assert chart  # one chart over both frameworks


def test_tflite_variants_are_measured_in_the_interpreter(rows):
    base = rows.loc["baseline"]
    for spec in ("tflite", "tflite(xnnpack=false)", "int8-dynamic", "fp16", "int8-static"):
        row = rows.loc[spec]
        assert row["status"] == "ok", row["error"]
        assert row["runtime"] == "litert"
        assert "LiteRT" in row["engine"] and "interpreter" in row["notes"]
        assert abs(row["metric_delta"]) <= 0.01, spec
        assert row["latency_ms_p50"] > 0
    assert "XNNPACK on" in rows.loc["tflite", "engine"] and "XNNPACK off" in rows.loc["tflite(xnnpack=false)", "engine"]
    assert rows.loc["tflite", "fidelity_max_abs"] < 1e-3  # fp32 flatbuffer computes the same function
    assert rows.loc["int8-static", "precision"] == "int8"
    assert rows.loc["fp16", "precision"] == "fp16-weights"
    # int8 weights: about a quarter of the fp32 flatbuffer; fp16: about half
    assert rows.loc["int8-static", "size_bytes"] < 0.3 * rows.loc["tflite", "size_bytes"]
    assert rows.loc["fp16", "size_bytes"] < 0.55 * rows.loc["tflite", "size_bytes"]
    assert base["size_bytes"] > rows.loc["tflite", "size_bytes"]


def test_xla_reports_compilation_apart_from_steady_state(rows):
    row = rows.loc["xla"]
    assert row["status"] == "ok" and row["runtime"] == "xla"
    assert row["first_call_ms"] > 5 * row["latency_ms_p50"]  # the first call compiles
    assert row["metric_delta"] == pytest.approx(0, abs=0.01)


def test_keras_bf16_computes_in_bfloat16_where_the_cpu_has_it_and_says_why_not_elsewhere(rows, keras_zoo):
    """bf16 on Keras: the mixed_bfloat16 policy in TensorFlow's graph, or with `+ xla` compiled by XLA — measured
    on a CPU with avx512_bf16 / AMX, an `unsupported` row that names them elsewhere (the ISA decides)."""
    if wb.device(measure=False).is_accelerated("bf16"):
        for spec in ("bf16", "bf16 + xla"):
            row = rows.loc[spec]
            assert row["status"] == "ok", row["error"]
            assert row["precision"] == "bf16" and "mixed_bfloat16 policy" in row["engine"]
            assert 0.999 <= row["fidelity_cosine"] < 1.0  # computed in bf16, not a float model called bf16
            assert row["metric_delta"] >= -0.01
        assert "XLA" in rows.loc["bf16 + xla", "engine"] and rows.loc["bf16 + xla", "first_call_ms"] > 0
        assert "XLA" not in rows.loc["bf16", "engine"]
    else:
        for spec in ("bf16", "bf16 + xla"):
            assert rows.loc[spec, "status"] == "unsupported" and "avx512_bf16" in rows.loc[spec, "error"]
    assert rows.loc["bf16 + tflite", "status"] == "unsupported"


def test_keras_bf16_rebuilds_the_layers_under_the_policy_and_keeps_fp32_weights_and_outputs(keras_zoo):
    from workbench.backends.keras.mixed import POLICY, with_policy

    model = keras_zoo[0].payload
    mixed = with_policy(model, "keras3", POLICY)
    convs = [layer for layer in mixed.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.dtype_policy.name == POLICY for layer in convs)
    assert mixed.layers[-1].dtype_policy.name == "float32"  # the output layer, as Keras' guide says
    assert all(w.dtype == "float32" for w in mixed.weights)
    for a, b in zip(mixed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.layers[1].dtype_policy.name == "float32"  # the caller's model is left alone


def test_keras_bf16_is_refused_by_isa_and_on_subclassed_models(keras_zoo, digits_data):
    import dataclasses

    profile = wb.device(measure=False)
    without = dataclasses.replace(profile, isa=tuple(f for f in profile.isa if "bf16" not in f),
                                  accelerated={**profile.accelerated, "bf16": ""})
    model, task = keras_zoo
    row = wb.Study(model, task, timing=FAST, device_profile=without).trial("bf16")
    assert row["status"] == "unsupported" and "neither avx512_bf16 nor AMX" in row["error"]
    assert profile.cpu_model in row["error"]
    sub = PyFunctionModel()
    sub(digits_data[0][0][:2])
    row = wb.Study(sub, _task(digits_data), timing=FAST, device_profile=dataclasses.replace(
        profile, accelerated={**profile.accelerated, "bf16": "avx512_bf16"})).trial("bf16")
    assert row["status"] == "unsupported" and "set_global_policy('mixed_bfloat16')" in row["error"]


def test_prune_then_full_int8_is_ten_times_smaller_gzipped_at_one_point(rows):
    base, row = rows.loc["baseline"], rows.loc["prune(0.8) + int8-static"]
    assert row["status"] == "ok"
    assert row["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert row["metric_delta"] >= -0.01
    # TF-MOT reports about 10x for prune + quantize on MNIST; the benchmark holds the 1/10 goal
    assert base["size_gzip_bytes"] / row["size_gzip_bytes"] >= 9.5


def test_sparse_tflite_stores_pruned_weights_sparse_and_records_xnnpacks_decision(rows, tf_study):
    """tflite(sparse=true): the converter's sparsity encoding — the same function in a far smaller file — and the
    row says whether XNNPACK takes its sparse path (digits-keras cannot: a 1-channel, stride-1 stem)."""
    dense, sparse = rows.loc["prune(0.8) + tflite"], rows.loc["prune(0.8) + tflite(sparse=true)"]
    assert dense["status"] == sparse["status"] == "ok", (dense["error"], sparse["error"])
    assert sparse["metric"] == dense["metric"]
    assert sparse["size_bytes"] < 0.35 * dense["size_bytes"]  # measured 255 KB against 970 KB
    assert sparse["params"] == dense["params"] and sparse["sparsity"] >= 0.75  # counted at the dense shape
    assert "sparse weights (XNNPACK sparse path declined)" in sparse["engine"]
    assert "stored sparse" in sparse["notes"] and "1 input channel(s)" in sparse["notes"]
    assert "sparse" not in dense["engine"]
    profile = wb.device(measure=False)
    if profile.arch == "x86_64" and profile.has("avx"):
        assert "AVX CPU" in sparse["notes"]
    x = tf_study.task.sample(16)
    a = tf_study.handle("prune(0.8) + tflite").predict(x)
    b = tf_study.handle("prune(0.8) + tflite(sparse=true)").predict(x)
    np.testing.assert_allclose(a, b, atol=1e-4)
    refused = rows.loc["int8-static + tflite(sparse=true)"]
    assert refused["status"] == "unsupported" and "prune(0.8) + tflite(sparse=true)" in refused["error"]


def _mobilenet_tflite(zero_fraction=0.85, stem_padding="explicit", pool="mean", extra=None):
    """The zoo's MobileNet shape, untrained (the check reads structure), its 1x1 kernels zeroed to
    `zero_fraction`, converted with tflite(sparse=true)'s converter setting."""
    from workbench.zoo.digits_keras import build

    layers = keras.layers
    model = build("digits-keras-mobilenet")
    body = [layer for layer in model.layers]
    if stem_padding == "same":  # the stem as TensorFlow's SAME at stride 2
        body = [layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)] + body[2:]
    if extra is not None:
        body.insert(6, extra)
    if pool != "mean":
        body[-2:] = [layers.Flatten(), layers.Dense(10)]
    model = keras.Sequential([keras.Input((32, 32, 3)), *body])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D) \
                and layer.kernel_size == (1, 1):
            w = layer.get_weights()[0]
            w[rng.random(w.shape) < zero_fraction] = 0
            layer.set_weights([w])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def test_the_sparse_check_accepts_a_mobilenet_shape_and_names_what_breaks_it():
    import dataclasses

    from workbench.backends.keras.litert import LiteModel
    from workbench.backends.keras.sparse import check

    profile = wb.device(measure=False)
    arm = dataclasses.replace(profile, arch="aarch64", isa=("neon",), cpu_model="Cortex-A78")
    avx = dataclasses.replace(profile, arch="x86_64", isa=("sse4_2", "avx", "avx2"), cpu_model="Some x86")
    good = _mobilenet_tflite()
    on_arm = check(good, arm)
    assert on_arm.expected and on_arm.model_reasons == () and on_arm.sparse_weights >= 5
    assert on_arm.zero_fraction == pytest.approx(0.85, abs=0.02)
    on_avx = check(good, avx)
    assert not on_avx.expected and on_avx.model_reasons == () and "AVX CPU (Some x86)" in on_avx.summary()
    # what breaks it, each named
    assert any("only 50%" in r for r in check(_mobilenet_tflite(zero_fraction=0.5), arm).model_reasons)
    assert any("padding='same' at stride 2" in r
               for r in check(_mobilenet_tflite(stem_padding="same"), arm).model_reasons)
    pooled = check(_mobilenet_tflite(extra=keras.layers.MaxPooling2D(1)), arm).model_reasons
    assert any(r.startswith("MAX_POOL_2D (op") and "sparse operator set" in r for r in pooled), pooled
    assert any("no MEAN" in r for r in check(_mobilenet_tflite(pool="flatten"), arm).model_reasons)
    # a .tflite file as given: the sparse weights are found and counted at their dense shape
    lite = LiteModel.from_file(good)
    assert lite.sparse and "sparse weights (XNNPACK sparse path" in lite.engine
    assert lite.weight_stats().params > 100_000 and lite.weight_stats().nonzero_params < 0.5 * lite.weight_stats().params


def test_clustering_shrinks_the_gzipped_keras_file_four_times_at_one_point(rows):
    base, row = rows.loc["baseline"], rows.loc["cluster(16)"]
    assert row["status"] == "ok" and row["metric_delta"] >= -0.01
    assert base["size_gzip_bytes"] / row["size_gzip_bytes"] >= 4


def test_collaborative_optimization_keeps_sparsity_through_clustering_and_qat(rows):
    row = rows.loc["prune(0.8) + cluster(16) + qat + tflite"]
    assert row["status"] == "ok", row["error"]
    assert row["precision"] == "int8"
    assert row["sparsity"] == pytest.approx(0.8, abs=0.02)  # PCQAT kept the zeros
    assert "PCQAT" in row["notes"] and "sparsity-preserving" in row["notes"]
    assert row["metric_delta"] >= -0.01
    assert rows.loc["qat + tflite", "precision"] == "int8" and rows.loc["qat + tflite", "metric_delta"] >= -0.01


def test_pruning_schedules_and_the_two_of_four_pattern(rows, tf_study):
    constant = rows.loc["prune(0.8, schedule=constant)"]
    assert constant["status"] == "ok" and constant["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert "constant schedule" in constant["notes"] and "polynomial schedule" in rows.loc["prune(0.8)", "notes"]
    assert constant["metric_delta"] >= -0.02  # one-shot pruning recovers less than the gradual schedule
    # without fine-tuning steps there is nothing for a schedule to spread over: the target is reached at once
    unrecovered = tf_study.trial("prune(0.8, finetune=0)")
    assert unrecovered["sparsity"] == pytest.approx(0.8, abs=0.01) and "one-shot" in unrecovered["notes"]
    two_four = rows.loc["prune(0.5, pattern=2:4)"]
    assert two_four["status"] == "ok" and two_four["metric_delta"] >= -0.01
    # the first convolution has one input channel: TF-MOT's m-by-n groups cannot apply, and the row says so
    assert "left dense (input channels not divisible by 4): conv2d" in two_four["notes"]
    assert 0.49 <= two_four["sparsity"] <= 0.5
    for name, kernel in tf_study.handle("prune(pattern=2:4)").weights():
        if kernel.ndim == 4 and kernel.shape[2] % 4 == 0:  # (kh, kw, in, out): groups of 4 input channels
            groups = np.moveaxis(kernel, 2, -1).reshape(-1, 4)
            assert (np.count_nonzero(groups, axis=1) <= 2).all(), name


def test_keras3_model_goes_through_the_bridge_for_tfmot(rows):
    for spec in ("prune(0.8)", "cluster(16)", "qat + tflite"):
        assert "rebuilt as tf_keras" in rows.loc[spec, "notes"], spec


def test_edge_checks_name_their_findings(rows):
    ok = rows.loc["int8-static + edgetpu"]
    assert ok["status"] == "ok" and "EdgeTPU-supported" in ok["notes"] and "QUANTIZE" in ok["notes"]
    bad = rows.loc["tflite + edgetpu"]
    assert bad["status"] == "unsupported"
    assert "CONV_2D" in bad["error"] and "not int8" in bad["error"] and "int8-static" in bad["error"]
    fits = rows.loc["int8-static + tf-micro(flash_kb=512, ram_kb=64)"]
    assert fits["status"] == "ok" and "fits" in fits["notes"]
    small = rows.loc["int8-static + tf-micro(flash_kb=64, ram_kb=64)"]
    assert small["status"] == "unsupported" and "does not fit" in small["error"] and "64 KB flash" in small["error"]


def test_tfjs_runs_in_node_with_the_tasks_accuracy_and_names_the_backend_that_ran(rows):
    row, tflite = rows.loc["tfjs"], rows.loc["tflite"]
    assert row["status"] == "ok", row["error"]
    assert abs(row["metric"] - rows.loc["baseline", "metric"]) <= 0.005 and row["fidelity_cosine"] > 0.9999
    assert row["engine"].startswith("TF.js 4.22.0 wasm backend") and "Node.js v" in row["engine"]
    assert "pipe round trip" in row["notes"] and "1 thread whatever the study's threads" in row["notes"]
    assert "other processes kept" not in row["notes"]  # Node's CPU time is the timing's own, not other load
    assert row["latency_ms_p50"] > 0 and 0.9 < row["size_bytes"] / tflite["size_bytes"] < 1.1  # float32 both
    assert row["params"] == tflite["params"]


def test_tfjs_quantized_weights_and_the_cpu_backend(tf_study, rows):
    small = tf_study.trial("tfjs(quantize=uint8)")
    assert small["status"] == "ok", small["error"]
    assert small["size_bytes"] < 0.3 * rows.loc["tfjs", "size_bytes"]
    assert abs(small["metric"] - rows.loc["baseline", "metric"]) <= 0.01 and small["fidelity_cosine"] > 0.999
    assert "weights stored uint8" in small["notes"] and small["precision"] == "fp32"  # dequantized at load
    plain = tf_study.trial("tfjs(backend=cpu)")
    assert plain["status"] == "ok" and "cpu backend (plain JavaScript)" in plain["engine"]
    assert plain["fidelity_cosine"] > 0.9999
    # no XNNPACK: the plain-JavaScript kernels are the slow fallback a page without WebAssembly gets
    assert plain["latency_ms_p50"] > 3 * rows.loc["tfjs", "latency_ms_p50"]


def test_tfjs_without_its_tools_is_an_unsupported_row_that_says_how_to_install_them(keras_zoo, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("WORKBENCH_TFJS_HOME", str(tmp_path))
    model, task = keras_zoo
    row = wb.Study(model, task, timing=FAST).trial("tfjs(quantize=float16)")
    assert row["status"] == "unsupported" and "make tfjs" in row["error"] and str(tmp_path) in row["error"]


def test_a_tfjs_model_keeps_its_node_process_to_itself(tf_study):
    import os
    import pickle
    import signal

    import psutil

    handle = tf_study.handle("tfjs")
    pid = handle.node().process.pid
    copy = pickle.loads(pickle.dumps(handle))  # what a worker gets: the files, not the process
    assert copy._node is None and copy.helper_processes() == ()
    assert np.allclose(copy.predict(tf_study.task.sample(4)), handle.predict(tf_study.task.sample(4)), atol=1e-5)
    other = copy.node().process.pid
    copy.stop()
    assert not psutil.pid_exists(other) and psutil.pid_exists(pid)
    # a process that died (killed, out of memory) is replaced on the next call, never read from
    os.kill(pid, signal.SIGKILL)
    handle.node().process.wait()
    assert np.allclose(handle.predict(tf_study.task.sample(4)), copy.predict(tf_study.task.sample(4)), atol=1e-5)
    assert handle.node().process.pid != pid
    copy.stop()


def test_tfjs_weights_read_back_the_way_tfjs_stores_them(tf_study):
    plain = tf_study.handle("tfjs").weights()
    for spec, tolerance in (("tfjs(quantize=uint8)", 0.51), ("tfjs(quantize=float16)", None)):
        stored = tf_study.handle(spec).weights()
        assert [w.shape for w in stored] == [w.shape for w in plain]
        for a, b in zip(plain, stored):
            if a.size < 2 or a.dtype != np.float32:
                continue
            if tolerance is None:  # float16: within its rounding
                assert b.dtype == np.float16 and np.allclose(a, b.astype(np.float32), rtol=1e-3, atol=1e-4)
            else:  # uint8: q * scale + min, within half a step of the float weight
                step = (max(a.max(), 0) - min(a.min(), 0)) / 255
                assert b.dtype == np.float32 and np.abs(a - b).max() <= tolerance * step * 1.02 + 1e-7


def test_micro_arena_estimate_counts_the_live_activations():
    from workbench.backends.keras.edge import micro_fit

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, padding="same"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)
    lite = wb.recipes.Tflite().apply(wb.wrap(model, x[:1]))
    fit = micro_fit(lite.payload, 1 << 20, 1 << 20)
    # conv input (8*8*1) + output (8*8*16) float32 alive together, batch 1
    assert fit.arena_bytes >= (64 + 1024) * 4
    assert fit.arena_bytes < 4 * (64 + 1024 + 1024 + 10) * 4
    assert fit.flash_bytes == len(lite.payload) and fit.fits


def test_targets_and_orders_that_make_no_sense_are_refused_before_running():
    with pytest.raises(wb.IncompatibleRecipesError, match="converter before it"):
        wb.Pipeline.parse("edgetpu")
    with pytest.raises(wb.IncompatibleRecipesError, match="must come before"):
        wb.Pipeline.parse("tflite + cluster(16)")
    with pytest.raises(wb.IncompatibleRecipesError, match="two runtimes"):
        wb.Pipeline.parse("xla + tflite")
    with pytest.raises(wb.ParameterError, match="io"):
        wb.Pipeline.parse("int8-static(io=int4)")


def test_torch_only_and_keras_only_recipes_say_so(cnn_study, rows):
    row = cnn_study.trial("cluster(16)")
    assert row["status"] == "unsupported" and "keras" in row["error"]
    torch_poly = cnn_study.trial("prune(0.5, pattern=channel, schedule=polynomial)")
    assert torch_poly["status"] == "unsupported" and "pruned at once" in torch_poly["error"]
    grown = cnn_study.trial("prune(0.5, schedule=polynomial)")  # torch grows unstructured sparsity in stages
    assert grown["status"] == "ok" and "3 stages" in grown["notes"] and abs(grown["sparsity"] - 0.5) < 0.01


# -- other inputs: tf_keras models, functional Keras 3 models with branches ------------------------

def test_a_tf_keras_model_converts_and_prunes_without_the_bridge(digits_data):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Flatten(input_shape=(8, 8, 1)),
                                 tf_keras.layers.Dense(64, activation="relu"), tf_keras.layers.Dense(10)])
    (x, y), _ = digits_data
    model.compile(tf_keras.optimizers.Adam(3e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, verbose=0)
    results = wb.Study(model, _task(digits_data), timing=FAST).run("prune(0.7); int8-static", progress=False)
    rows = results.frame.set_index("pipeline")
    assert rows.loc["baseline", "metric"] > 0.9
    assert rows.loc["prune(0.7)", "status"] == "ok" and "rebuilt" not in str(rows.loc["prune(0.7)", "notes"])
    assert rows.loc["prune(0.7)", "sparsity"] == pytest.approx(0.7, abs=0.01)
    assert rows.loc["int8-static", "status"] == "ok" and rows.loc["int8-static", "metric_delta"] >= -0.02


def test_a_functional_keras3_model_with_a_skip_connection_is_bridged_exactly(digits_data):
    from workbench.backends.keras.bridge import to_tf_keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inp))
    h = keras.layers.Add()([h, keras.layers.Dense(16)(h)])
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    (x, _), _ = digits_data
    handle = wb.wrap(model, x[:1])
    bridged, note = to_tf_keras(handle, x[:32])
    assert type(bridged).__module__.startswith("tf_keras")
    np.testing.assert_allclose(np.asarray(bridged(x[:64])), handle.predict(x[:64]), atol=1e-5)
    assert "outputs checked" in note


# -- bad input: clear errors or unsupported rows ----------------------------------------------------

class PyFunctionModel(keras.Model):
    """A subclassed model whose call leaves TensorFlow for Python: neither TFLite nor XLA can take it."""

    def __init__(self):
        super().__init__()
        self.flat, self.dense = keras.layers.Flatten(), keras.layers.Dense(10)

    def call(self, x):
        y = tf.py_function(lambda t: t * 1.0, [x], tf.float32)
        return self.dense(self.flat(tf.reshape(y, (-1, 8, 8, 1))))


def test_a_subclassed_model_the_converter_cannot_handle_gives_unsupported_rows(digits_data):
    model = PyFunctionModel()
    (x, _), _ = digits_data
    model(x[:2])
    results = wb.Study(model, _task(digits_data), timing=FAST).run("tflite; xla; prune(0.5)", progress=False)
    rows = results.frame.set_index("pipeline")
    assert rows.loc["baseline", "status"] == "ok"
    assert rows.loc["tflite", "status"] == "unsupported"
    assert "TFLite converter failed" in rows.loc["tflite", "error"] and "EagerPyFunc" in rows.loc["tflite", "error"]
    assert rows.loc["xla", "status"] == "unsupported" and "XLA cannot compile" in rows.loc["xla", "error"]
    assert rows.loc["prune(0.5)", "status"] == "unsupported"
    assert "subclassed" in rows.loc["prune(0.5)", "error"] and "functional API" in rows.loc["prune(0.5)", "error"]


@keras.saving.register_keras_serializable(package="wbtest")
class Keras3Custom(keras.layers.Layer):
    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], 10), initializer="ones")

    def call(self, x):
        return x @ self.kernel


class TfKerasCustom(tf_keras.layers.Layer):
    def build(self, shape):
        self.kernel = self.add_weight(name="kernel", shape=(shape[-1], 10), initializer="ones")

    def call(self, x):
        return tf.matmul(x, self.kernel)


def test_layers_tfmot_cannot_take_are_named(digits_data):
    inp = keras.Input((8, 8, 1))
    k3 = keras.Model(inp, Keras3Custom()(keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inp))))
    row = wb.Study(k3, _task(digits_data), timing=FAST).trial("prune(0.5)")
    assert row["status"] == "unsupported"
    assert "cannot be bridged" in row["error"] and "Keras3Custom" in row["error"] and "custom" in row["error"]

    inp2 = tf_keras.Input((8, 8, 1))
    k2 = tf_keras.Model(inp2, TfKerasCustom()(tf_keras.layers.Dense(16, activation="relu")(
        tf_keras.layers.Flatten()(inp2))))
    row = wb.Study(k2, _task(digits_data), timing=FAST).trial("prune(0.5)")
    assert row["status"] == "ok"  # the Dense layer is pruned; the custom one is left dense and named
    assert "left dense" in row["notes"] and "TfKerasCustom" in row["notes"]
    assert 0.2 < row["sparsity"] < 0.5


def test_a_representative_dataset_of_the_wrong_shape_is_a_clear_error(keras_zoo):
    model, _ = keras_zoo
    flat = wb.tasks.Classification(np.zeros((10, 64), np.float32), np.zeros(10, int))
    with pytest.raises(wb.DataError, match=r"shape \(64,\) but the model takes \(8, 8, 1\)"):
        wb.recipes.Int8Static(calibration=200).apply(model, wb.recipes.ApplyContext(task=flat))
    with pytest.raises(wb.UnsupportedError, match="representative dataset"):
        wb.recipes.Int8Static(calibration=200).apply(model)


def test_importing_the_backend_leaves_tf_keras_alone():
    import os
    import subprocess
    import sys

    code = ("import os, workbench as wb; from workbench.backends.keras import _tf; _tf.tfmot(); "
            "import tensorflow as tf; print(os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.__name__)")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    legacy, name = out.stdout.split()[-2:]
    assert legacy == "None" and not name.startswith("tf_keras")


def test_gzip_of_the_int8_flatbuffer_matches_the_reported_size(keras_zoo, rows):
    model, task = keras_zoo
    lite = wb.recipes.Int8Static(calibration=200).apply(model, wb.recipes.ApplyContext(task=task))
    assert abs(len(gzip.compress(lite.serialize(), compresslevel=6)) - rows.loc["int8-static", "size_gzip_bytes"]) < 2048


def test_the_cli_runs_a_keras_study(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "r.csv"
    proc = subprocess.run([sys.executable, "-m", "workbench", "run", "--model", "digits-keras", "--recipes",
                           "int8-static; tflite + edgetpu", "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    frame = wb.Results.load(out).frame.set_index("pipeline")
    assert frame.loc["int8-static", "status"] == "ok" and frame.loc["tflite + edgetpu", "status"] == "unsupported"
    assert "cuInit" not in proc.stderr  # TensorFlow's start-up noise stays out of the user's terminal


def _keras_names(study):
    """Keras names a model's layers by how many it built before (conv2d_4, dense_5): read them off the model."""
    layers = study.baseline.payload.layers
    names = {kind: [layer.name for layer in layers if type(layer).__name__ == kind] for kind in ("Conv2D", "Dense")}
    return names["Conv2D"], names["Dense"][0]


@pytest.mark.parametrize("spec", ["tflite", "int8-dynamic", "int8-static"])
def test_tflite_per_layer_view_matches_keras_layers_and_adds_up(tf_study, spec):
    view = tf_study.layers(spec)
    frame = view.frame.set_index("layer")
    convs, dense = _keras_names(tf_study)
    assert len(convs) == 4 and set(convs) <= set(frame.index) and dense in frame.index
    assert frame.loc[convs, "op"].str.startswith("Conv2D").all()
    # each fused Conv-BN-ReLU op is matched to its Keras group (the heaviest op of a group with pooling may be the pool)
    assert frame.loc[convs, "kernel"].isin(["CONV_2D", "MAX_POOL_2D", "MEAN"]).all()
    assert frame.loc[convs, "flags"].str.contains("fused").all()
    final = frame.loc[dense, "sqnr_db"]
    assert (final > 100) if spec == "tflite" else (25 < final < 80)  # float rounding vs int8 noise
    # prefix models (LiteRT has no per-op profile): differences of prefix medians, so the layers add up to the
    # full-length prefix, timed against the whole model; measured 0.975-1.020 for the TFLite rows and 0.909-1.107
    # for the Keras baseline (TensorFlow's per-call dispatch) with two busy-loops on this machine's two cores
    assert abs(1 - view.coverage) <= 0.3 and abs(1 - view.baseline_coverage) <= 0.3, view.frame
    if spec == "int8-static":
        assert "(quantize/dequantize)" in frame.index and (frame.loc[convs, "precision"] == "int8").all()


def test_keras_int8_static_exclude_keeps_the_named_layers_float_through_the_tflite_debugger(tf_study):
    convs, dense = _keras_names(tf_study)
    spec = f"int8-static(exclude=[{dense}, {convs[3]}])"
    row = tf_study.trial(spec)
    assert row["status"] == "ok", row["error"]
    assert f"kept in float by exclude=: {convs[3]}, {dense}" in row["notes"]
    handle = tf_study.handle(spec)
    assert dense not in handle.changed_layers and convs[0] in handle.changed_layers
    frame = tf_study.layers(spec).frame.set_index("layer")
    assert frame.loc[dense, "precision"] == "fp32" and frame.loc[convs[0], "precision"] == "int8"
    assert "kept fp32 (exclude=)" in frame.loc[dense, "flags"]
    assert row["fidelity"] >= tf_study.trial("int8-static")["fidelity"] - 0.01
    bad = tf_study.trial("int8-static(exclude=fc9)")
    assert bad["status"] == "failed" and f"{convs[0]}, {convs[1]}" in bad["error"]
