"""How much memory this process may really use: the machine's RAM, or less where a cgroup (a container,
a systemd slice, a batch scheduler) limits it. psutil reports the machine's, which a container can't use."""

from __future__ import annotations

from pathlib import Path

_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _UNLIMITED else None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """`root/relative` and each folder above it, up to `root` itself (limits of a parent cgroup apply too)."""
    parts = [p for p in relative.strip("/").split("/") if p]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_memory_limit(proc_cgroup: str | Path = "/proc/self/cgroup", root: str | Path = "/sys/fs/cgroup") -> int | None:
    """The tightest memory limit of this process's cgroups (v2 `memory.max`, v1 `memory.limit_in_bytes`), in
    bytes; None when there is none."""
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if controllers == "":          # cgroup v2 (unified)
            candidates += [d / "memory.max" for d in _ancestors(root, relative)]
            candidates += [d / "memory.max" for d in _ancestors(root / "unified", relative)]
        elif "memory" in controllers.split(","):   # cgroup v1
            candidates += [d / "memory.limit_in_bytes" for d in _ancestors(root / "memory", relative)]
    limits = [v for v in (_read_limit(p) for p in candidates) if v is not None]
    return min(limits) if limits else None


def usable_memory_bytes() -> int:
    """The machine's memory, or the cgroup's limit where that is lower."""
    import psutil

    total = int(psutil.virtual_memory().total)
    limit = cgroup_memory_limit()
    return min(total, limit) if limit else total


def tree_resident_bytes(pid: int) -> int:
    """Resident memory of a process and every process it started (0 when it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in family:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def session_memory() -> dict[str, int]:
    """Resident memory of this process (a notebook's or the dashboard's kernel) and of the processes it started
    (a warm trial worker, and whatever that started), beside the machine's memory in use and what may be used."""
    import os

    import psutil

    own = psutil.Process().memory_info().rss
    vm = psutil.virtual_memory()
    return {"process_bytes": own, "workers_bytes": max(0, tree_resident_bytes(os.getpid()) - own),
            "machine_used_bytes": vm.total - vm.available, "usable_bytes": usable_memory_bytes()}
