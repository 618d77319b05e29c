"""A user's own model, as they would bring it: a package `my_pkg/nets.py` with a class `Net` that builds without
arguments, and its weights trained briefly on the digits (shared by the own-model and install tests)."""

import importlib.util
from pathlib import Path

import torch

NETS = '''
from torch import nn


class Net(nn.Sequential):
    """Flat features or 1x8x8 digits in, 10 class scores out."""

    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
'''


def user_package(folder: Path, task) -> torch.nn.Module:
    """Write my_pkg/nets.py under `folder` and return its Net trained on the task's training data (150 Adam steps,
    seeded): about 0.9 accuracy on the digits."""
    (folder / "my_pkg").mkdir(exist_ok=True)
    (folder / "my_pkg" / "__init__.py").write_text("")
    (folder / "my_pkg" / "nets.py").write_text(NETS)
    spec = importlib.util.spec_from_file_location("user_nets", folder / "my_pkg" / "nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy(task.train[0]), torch.from_numpy(task.train[1])
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net
