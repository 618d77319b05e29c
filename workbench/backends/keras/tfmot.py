"""TF-MOT handlers: prune (schedules, m-by-n 2:4), cluster, QAT and their collaborative combinations.

TF-MOT accepts tf_keras models only, so a Keras 3 model goes through the bridge first. Each recipe wraps
the layers TF-MOT supports (the others are left as they are, and named in the notes), fine-tunes on the
task's training data, and strips the wrappers. After prune, cluster keeps the zeros (sparsity-preserving
clustering) and qat uses the pruning- / cluster-preserving schemes (PQAT, CQAT, PCQAT).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import UnsupportedError
from ...recipes import ApplyContext, register_handler
from ...recipes.quantization import Qat
from ...recipes.sparsity import Cluster, Prune
from ...tasks import training_data
from . import _tf
from .bridge import bridged_or_unsupported
from .handle import KerasModel

BATCH = 64
#: Adam learning rates of the fine-tuning (TF-MOT's guides use 1e-3 for pruning, lower once weights are shared)
LR = {"prune": 1e-3, "cluster": 1e-4, "qat": 1e-4}


def _has_kernel(layer: Any) -> bool:
    return any(len(w.shape) >= 2 for w in layer.weights)


def _step(handle: KerasModel) -> list[str]:
    return [r.name for r in handle.lineage]


def _source(spec: str, handle: KerasModel, context: ApplyContext) -> tuple[Any, list[str]]:
    if handle.runtime != "tensorflow":
        raise UnsupportedError(spec, f"it changes the Keras model's weights; this one already runs as {handle.runtime}")
    example = context.task.sample(8) if context.task is not None else handle.example_input
    return bridged_or_unsupported(spec, handle, example)


def _wrap_layers(model: Any, wrap: Any, supports: Any, kernels_only: bool = True) -> tuple[Any, list[str], int]:
    """clone_model with `wrap` applied to every supported layer (holding a kernel, where `kernels_only`);
    returns (model, the unsupported layers, how many were wrapped)."""
    tfk = _tf.tf_keras()
    skipped, wrapped = [], []

    def clone_fn(layer):
        if kernels_only and not _has_kernel(layer):
            return layer.__class__.from_config(layer.get_config())
        if supports(layer):
            wrapped.append(layer.name)
            return wrap(layer)
        skipped.append(f"{layer.name} ({type(layer).__name__})")
        return layer.__class__.from_config(layer.get_config())

    weights = {layer.name: layer.get_weights() for layer in model.layers}
    new = tfk.models.clone_model(model, clone_function=clone_fn)
    for layer in new.layers:  # unwrapped layers were rebuilt from config: give them their weights back
        if layer.name in weights and layer.name not in wrapped and weights[layer.name]:
            layer.set_weights(weights[layer.name])
    return new, skipped, len(wrapped)


def _training_data(context: ApplyContext, model: Any) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """(x, y, loss) to fine-tune on: the task's labelled training data with cross-entropy, else None."""
    train = training_data(context.task)
    if train is None:
        return None
    tfk = _tf.tf_keras()
    x, y = train
    probe = np.asarray(model(x[:16], training=False))
    probabilities = probe.min() >= 0 and np.allclose(probe.sum(axis=-1), 1.0, atol=1e-3)
    return x, y, tfk.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def _fit(model: Any, data: tuple | None, epochs: int, lr: float, seed: int, callbacks: list | None = None,
         task: Any = None) -> str | None:
    """Fine-tune `model` (in place). Without labelled data or with epochs=0, one step at learning rate 0 on the
    task's inputs (targets: the model's own outputs) lets TF-MOT apply its masks / centroids without training."""
    tfk = _tf.tf_keras()
    tfk.utils.set_random_seed(seed)
    if data is None or epochs <= 0:
        x = task.calibration(BATCH) if task is not None else None
        if x is None:
            return "no data to apply the recipe on"
        model.compile(tfk.optimizers.SGD(0.0), tfk.losses.MeanSquaredError())
        model.fit(x, np.asarray(model(x, training=False)), epochs=1, batch_size=len(x), verbose=0,
                  callbacks=callbacks or [])
        return None if epochs <= 0 else "not fine-tuned: the task has no labelled training data"
    x, y, loss = data
    schedule = tfk.optimizers.schedules.CosineDecay(lr, _steps(len(x), epochs))
    model.compile(tfk.optimizers.Adam(schedule), loss)
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, shuffle=True, callbacks=callbacks or [])
    return None


def _steps(samples: int, epochs: int) -> int:
    """Optimizer steps of `epochs` fine-tuning epochs over `samples` (what _fit runs)."""
    return epochs * math.ceil(samples / BATCH)


def _result(handle: KerasModel, model: Any, spec: str, notes: list[str], **changes: Any) -> KerasModel:
    new = KerasModel(model, handle.example_input, copy_model=False)
    new.notes = tuple(dict.fromkeys(handle.notes + tuple(notes)))
    for key, value in changes.items():
        setattr(new, key, value)
    return new


@register_handler(Prune, "keras")
def prune(recipe: Prune, handle: KerasModel, context: ApplyContext) -> KerasModel:
    spec = recipe.to_spec()
    if recipe.pattern == "channel":
        raise UnsupportedError(spec, "TF-MOT prunes weights, not whole channels; channel pruning is torch-only "
                                     "(torch-pruning). Use pattern=unstructured or pattern=2:4")
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it prunes float32 weights; this model is {handle.precision}")
    tfmot = _tf.tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    model, notes = _source(spec, handle, context)
    sk = tfmot.sparsity.keras
    epochs = recipe.finetune_epochs
    data = _training_data(context, model)
    schedule_name = "polynomial" if recipe.schedule == "auto" else recipe.schedule
    if data is None or epochs <= 0:  # no fine-tuning steps for a schedule to spread over: prune at once
        schedule_name = "constant (one-shot, no fine-tuning)"
    if recipe.pattern == "2:4" or schedule_name != "polynomial":
        schedule = sk.ConstantSparsity(recipe.sparsity, begin_step=0, frequency=1)
    else:  # TF-MOT's usual: from 0 to the target over the first 70% of the steps, then hold
        end = max(1, int(0.7 * _steps(len(data[0]), epochs)))
        schedule = sk.PolynomialDecay(0.0, recipe.sparsity, begin_step=0, end_step=end,
                                      frequency=max(1, end // 10))
    options: dict[str, Any] = {"pruning_schedule": schedule}
    if recipe.pattern == "2:4":
        options["sparsity_m_by_n"] = (2, 4)

    def supports(layer):
        if not PruneRegistry.supports(layer):
            return False
        if recipe.pattern == "2:4":  # m-by-n groups run along the input channels
            kernel = next(w for w in layer.weights if len(w.shape) >= 2)
            return kernel.shape[-2] % 4 == 0
        return True

    pruned, skipped, wrapped = _wrap_layers(model, lambda layer: sk.prune_low_magnitude(layer, **options), supports)
    if not wrapped:
        raise UnsupportedError(spec, "no layer can be pruned by TF-MOT"
                               + (f" (left dense: {', '.join(skipped)})" if skipped else " (no Conv/Dense kernels)"))
    if skipped:
        why = "input channels not divisible by 4" if recipe.pattern == "2:4" else "TF-MOT cannot prune these layers"
        notes.append(f"{spec}: left dense ({why}): {', '.join(skipped)}")
    missing = _fit(pruned, data, epochs, LR["prune"], context.seed, [sk.UpdatePruningStep()], context.task)
    stripped = sk.strip_pruning(pruned)
    notes.append(f"{spec}: {missing}" if missing else
                 f"{spec}: TF-MOT {schedule_name} schedule over {epochs} fine-tuning epoch(s), then stripped")
    notes.append(f"{spec}: zeros stored densely; the gzip size shows the gain, not the latency")
    return _result(handle, stripped, spec, notes)


_INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}


@register_handler(Cluster, "keras")
def cluster(recipe: Cluster, handle: KerasModel, context: ApplyContext) -> KerasModel:
    spec = recipe.to_spec()
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it clusters float32 weights; this model is {handle.precision}")
    tfmot = _tf.tfmot()
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as experimental

    ck = tfmot.clustering.keras
    model, notes = _source(spec, handle, context)  # a new model: cluster_weights changes what it is given
    preserve = "prune" in _step(handle)
    init = getattr(ck.CentroidInitialization, _INITS[recipe.init])

    def wrap(layer):
        return experimental.cluster_weights(layer, number_of_clusters=recipe.clusters, cluster_centroids_init=init,
                                            preserve_sparsity=preserve)

    clustered, skipped, wrapped = _wrap_layers(model, wrap, clustering_registry.ClusteringRegistry.supports)
    if not wrapped:
        raise UnsupportedError(spec, "no layer can be clustered by TF-MOT"
                               + (f" ({', '.join(skipped)})" if skipped else " (no Conv/Dense kernels)"))
    if skipped:
        notes.append(f"{spec}: not clustered (TF-MOT cannot cluster these layers): {', '.join(skipped)}")
    epochs = recipe.finetune_epochs
    missing = _fit(clustered, _training_data(context, clustered), epochs, LR["cluster"], context.seed,
                   task=context.task)
    stripped = ck.strip_clustering(clustered)
    notes.append(f"{spec}: {missing}" if missing else
                 f"{spec}: {recipe.clusters} shared values per layer"
                 + (", zeros kept (sparsity-preserving)" if preserve else "")
                 + f", {epochs} fine-tuning epoch(s), then stripped; the file stays float32 (gzip shows the gain)")
    return _result(handle, stripped, spec, notes)


@register_handler(Qat, "keras")
def qat(recipe: Qat, handle: KerasModel, context: ApplyContext) -> KerasModel:
    spec = recipe.to_spec()
    if recipe.engine != "auto":
        raise UnsupportedError(spec, "engine= picks a torch quantized engine; Keras QAT targets TFLite's int8 kernels")
    if handle.precision != "fp32":
        raise UnsupportedError(spec, f"it trains a float32 model; this model is {handle.precision}")
    tfmot = _tf.tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
        default_8bit_quantize_scheme,
    )

    qk = tfmot.quantization.keras
    model, notes = _source(spec, handle, context)
    data = _training_data(context, model)
    if data is None:
        raise UnsupportedError(spec, "it fine-tunes on labelled training data and this task has none; "
                                     "use int8-static (calibration only) instead")
    steps = _step(handle)
    pruned, clustered = "prune" in steps, "cluster" in steps
    if clustered:
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned)
        kind = "PCQAT (sparsity- and cluster-preserving)" if pruned else "CQAT (cluster-preserving)"
    elif pruned:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        kind = "PQAT (sparsity-preserving)"
    else:
        scheme, kind = default_8bit_quantize_scheme.Default8BitQuantizeScheme(), "QAT"
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    unsupported = [f"{layer.name} ({type(layer).__name__})" for layer in model.layers
                   if _has_kernel(layer) and not registry.supports(layer)]
    if not unsupported:  # the whole model: TF-MOT's transforms fold Conv-BatchNorm-ReLU patterns
        annotated = qk.quantize_annotate_model(model)
    else:  # only the layers it can quantize; the others stay float
        annotated, skipped, wrapped = _wrap_layers(model, qk.quantize_annotate_layer, registry.supports)
        if not wrapped:
            raise UnsupportedError(spec, f"TF-MOT cannot quantize any layer of this model ({', '.join(skipped)})")
        notes.append(f"{spec}: left float (TF-MOT has no int8 scheme for them): {', '.join(skipped)}")
    try:
        with qk.quantize_scope():
            quantized = qk.quantize_apply(annotated, scheme)
    except Exception as exc:
        raise UnsupportedError(spec, f"TF-MOT could not build the QAT model ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]})") from None
    _fit(quantized, data, recipe.epochs, recipe.lr, context.seed)
    notes.append(f"{spec}: {kind}, {recipe.epochs} epoch(s); a float model with fake-quant nodes — "
                 "convert it with tflite to run int8 kernels")
    return _result(handle, quantized, spec, notes, precision="int8-simulated")
