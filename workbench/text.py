"""Text tasks: embedding fidelity on built-in sentences, and STS (Spearman of cosine similarity against gold
scores) read from an STS-format file the user gives. Both can batch by length (sort, pad per batch)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .tasks import TASKS, Task, hash_array

#: sentences written for this project: short and long, plain and technical, a few near-duplicates
BUILTIN_SENTENCES = (
    "The quantized model is four times smaller than the original.",
    "A smaller model is not always a faster one.",
    "Pruning half of the weights left the accuracy unchanged.",
    "Removing half of the weights did not change the accuracy.",
    "The cat sat on the warm windowsill all afternoon.",
    "A cat was sleeping in the sun by the window.",
    "Latency is measured after a warm-up, with the median and its spread reported.",
    "We report the median latency and the interquartile range over many calls.",
    "The train leaves at seven tomorrow morning.",
    "Tomorrow's first train departs at 7 a.m.",
    "Graph fusion merges a convolution, its batch normalization and the activation into one kernel.",
    "Mixed precision keeps the weights in fp32 and computes matrix products in bfloat16.",
    "She bought fresh bread and cheese at the market.",
    "He forgot his umbrella and got soaked on the way home.",
    "The report was rendered to HTML and opened without an internet connection.",
    "Stock prices fell sharply after the announcement.",
    "A dog is running across a grassy field.",
    "The dog chased a ball through the park.",
    "int8",
    "Why does the emulated fp16 path run slower than fp32 on this processor?",
    "Deploying to a phone means the model must fit in a few megabytes and run on a small CPU.",
    "Sparse tensor cores skip two of every four weights in hardware.",
    "The committee postponed the vote until next week because several members were travelling "
    "and the remaining ones could not agree on the wording of the final paragraph.",
    "Rain is expected in the north later today.",
    "Weather: showers in northern regions this evening.",
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The recipe needs two eggs, flour, sugar and a pinch of salt.",
    "Children were building a sandcastle on the beach.",
    "Quantization-aware training simulates int8 rounding while fine-tuning.",
    "The museum opens at nine and closes at five on weekdays.",
    "Compile time is reported apart from the steady-state latency.",
)


def _strings(values: Any, what: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise DataError(f"{what} must be a list of sentences, not a single string")
    items = list(values)
    if not items:
        raise DataError(f"{what} is empty: a text task needs at least one sentence")
    bad = [i for i, v in enumerate(items) if not isinstance(v, str)]
    if bad:
        raise DataError(f"{what}: item {bad[0]} is a {type(items[bad[0]]).__name__}, not a string")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


class TextTask(Task):
    """Sentences in; `sort_by_length` batches sentences of similar length together (less padding)."""

    eval_batch_size = None  # outputs are computed at the study's batch size: the batch decides the padding

    def __init__(self, sentences: Any, *, name: str, sort_by_length: bool = True):
        super().__init__(_strings(sentences, "sentences"), name=name)
        self.sort_by_length = sort_by_length
        self.order = np.argsort([len(s) for s in self.inputs], kind="stable") if sort_by_length else None

    def batches(self, batch_size: int):
        inputs = self.inputs if self.order is None else self.inputs[self.order]
        for start in range(0, len(inputs), batch_size):
            yield inputs[start:start + batch_size]

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        if self.order is None:
            return outputs
        restored = np.empty_like(outputs)
        restored[self.order] = outputs
        return restored

    def for_model(self, handle: Any) -> TextTask:
        """Batched by `handle`'s token counts (what the padding depends on), where it can count them; by
        characters otherwise. A copy: the task itself keeps its order."""
        if not self.sort_by_length:
            return self
        lengths = handle.input_lengths(self.inputs)
        if lengths is None:
            return self
        task = copy.copy(self)
        task.order = np.argsort(lengths, kind="stable")
        return task

    def subset(self, units: np.ndarray, *, name: str | None = None) -> TextTask:
        part = super().subset(units, name=name)
        part.order = np.argsort([len(s) for s in part.inputs], kind="stable") if self.sort_by_length else None
        return part

    def fingerprint(self) -> str:
        """The sentences, the batching by length, and for STS every pair and gold score (not their repr)."""
        import hashlib

        h = hashlib.sha256(super().fingerprint().encode())
        h.update(str(self.sort_by_length).encode())
        for name in ("pairs", "gold"):
            hash_array(h, getattr(self, name, None))
        return h.hexdigest()


class EmbeddingFidelity(TextTask):
    """No labels: how close each variant's sentence embeddings stay to the baseline's (cosine)."""

    def __init__(self, sentences: Any = BUILTIN_SENTENCES, *, sort_by_length: bool = True):
        super().__init__(sentences, name="embedding-fidelity", sort_by_length=sort_by_length)


class STS(TextTask):
    """Semantic textual similarity: Spearman correlation of cosine(embedding 1, embedding 2) with gold scores.

    Reads STS-benchmark files: tab-separated genre, file, year, id, score, sentence1, sentence2 (more fields
    after them are ignored). Malformed lines and non-UTF-8 bytes raise DataError naming the line."""

    metric_name = "spearman"

    #: the sentences calibration draws from, when `train="auto"` finds a training split beside the file
    CALIBRATION_SENTENCES = 2048

    def __init__(self, path: str | os.PathLike, *, sort_by_length: bool = True, limit: int | None = None,
                 train: str | os.PathLike | None = "auto"):
        """`train`: an STS file whose sentences calibrate int8 (never the sentences being scored); "auto" takes
        `sts-train.csv` beside `path` when there is one and `path` is not it; None: no training data."""
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"no STS file at {str(self.path)!r}")
        pairs, gold = _read_sts(self.path, limit)
        self._set_pairs(pairs, np.array(gold), f"sts:{self.path.name}", sort_by_length)
        self.train_path = _train_split(self.path, train)
        self.train = None
        if self.train_path is not None:
            scored = set(self.inputs)
            sentences = list(dict.fromkeys(s for pair in _read_sts(self.train_path, None)[0] for s in pair
                                           if s not in scored))
            if not sentences:
                raise DataError(f"{self.train_path.name} has no sentence that is not also scored in {self.path.name}: "
                                "pass train= another split, or train=None")
            order = np.random.default_rng(0).permutation(len(sentences))[:self.CALIBRATION_SENTENCES]
            self.train = (_strings([sentences[i] for i in order], f"{self.train_path.name} sentences"),)

    @property
    def calibration_source(self) -> str:
        """Where int8 calibration samples come from, in words (a row's note says it)."""
        if self.train is None:
            return "the evaluation sentences (no training split: an optimistic calibration)"
        return f"{self.train_path.name} (the training split, none of the scored sentences)"

    def _set_pairs(self, pairs: list[tuple[str, str]], gold: np.ndarray, name: str, sort_by_length: bool) -> None:
        sentences = list(dict.fromkeys(s for pair in pairs for s in pair))
        index = {s: i for i, s in enumerate(sentences)}
        self.pairs = np.array([(index[a], index[b]) for a, b in pairs])
        self.gold = gold
        TextTask.__init__(self, sentences, name=name, sort_by_length=sort_by_length)

    @property
    def units(self) -> int:
        return len(self.pairs)

    def subset(self, units: np.ndarray, *, name: str | None = None) -> STS:
        """The same file's task over these sentence pairs (and only the sentences they use; the training split
        kept: it is not evaluation data)."""
        part = object.__new__(STS)
        pairs = [(self.inputs[a], self.inputs[b]) for a, b in self.pairs[units]]
        part._set_pairs(pairs, self.gold[units], name or f"{self.name}[{len(units)}]", self.sort_by_length)
        part.path, part.train_path, part.train = self.path, self.train_path, self.train
        return part

    def _similarities(self, outputs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        a, b = outputs[pairs[:, 0]], outputs[pairs[:, 1]]
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    def score(self, outputs: np.ndarray) -> float:
        from scipy.stats import spearmanr

        return float(spearmanr(self._similarities(outputs, self.pairs), self.gold).statistic)

    def score_units(self, outputs: np.ndarray, units: np.ndarray) -> float:
        from scipy.stats import spearmanr

        return float(spearmanr(self._similarities(outputs, self.pairs[units]), self.gold[units]).statistic)

    def describe(self) -> str:
        calibration = f", calibration from {self.train_path.name}" if self.train is not None else ""
        return f"{self.name}: {len(self.pairs)} pairs, {len(self)} sentences, metric Spearman{calibration}"


def _train_split(path: Path, train: str | os.PathLike | None) -> Path | None:
    if train is None:
        return None
    if isinstance(train, str) and train == "auto":
        beside = path.with_name("sts-train.csv")
        return beside if beside.is_file() and beside.resolve() != path.resolve() else None
    p = Path(train)
    if not p.is_file():
        raise DataError(f"no STS training file at {str(p)!r}: pass an STS-format file, \"auto\" or None")
    if p.resolve() == path.resolve():
        raise DataError(f"train= is the file being scored ({p.name}): calibrating on the scored sentences is "
                        "optimistic; pass the training split, or train=None")
    return p


def _read_sts(path: Path, limit: int | None) -> tuple[list[tuple[str, str]], list[float]]:
    pairs, gold = [], []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path.name} line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at "
                                f"column {exc.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 7:
                raise DataError(f"{path.name} line {number}: {len(fields)} tab-separated fields, expected "
                                "7 (genre, file, year, id, score, sentence1, sentence2)")
            try:
                score = float(fields[4])
            except ValueError:
                raise DataError(f"{path.name} line {number}: score {fields[4]!r} is not a number") from None
            if not 0.0 <= score <= 5.0:
                raise DataError(f"{path.name} line {number}: score {score} is outside [0, 5]")
            if not fields[5].strip() or not fields[6].strip():
                raise DataError(f"{path.name} line {number}: an empty sentence")
            pairs.append((fields[5], fields[6]))
            gold.append(score)
            if limit and len(pairs) >= limit:
                break
    if not pairs:
        raise DataError(f"{path.name} holds no sentence pairs")
    return pairs, gold


TASKS.register("embedding-fidelity", EmbeddingFidelity)
TASKS.register("sts", STS)
