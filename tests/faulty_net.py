"""A user's model file whose forward misbehaves in some precisions, as a native kernel might: a segmentation
fault in float16, a hang in bfloat16, an allocation without bound once int8-dynamic has quantized it. In float32
(the baseline) it is a plain classifier of the 8x8 digits. Used by the dashboard's isolation test through
`--architecture faulty_net.py:FaultyNet`."""

import ctypes
import time

import torch
from torch import nn


class FaultyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        weight = getattr(self.fc, "weight", None)
        dtype = weight.dtype if isinstance(weight, torch.Tensor) else None
        if dtype is torch.float16:
            ctypes.string_at(0)  # a segmentation fault
        if dtype is torch.bfloat16:
            time.sleep(3600)  # a hang
        if dtype is None:  # quantized: the weight is packed, not a tensor attribute
            hoard = []
            while True:
                hoard.append(torch.ones(2**27))  # 512 MiB at a time, until the memory limit stops it
        return self.fc(self.flat(x).to(self.fc.weight.dtype)).float()
