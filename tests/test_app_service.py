"""`workbench app` as a service (real Voila, real kernels, plain HTTP clients): Host-header checks on loopback, a
token beyond it, a cap on sessions answered "busy", idle kernels culled, the port asked for or a clear error."""

import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from workbench._net import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("Workbench dashboard: http://"), line
    return proc, line.split(": ", 1)[1].strip()


def _stop(proc: subprocess.Popen) -> None:
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    gone, alive = psutil.wait_procs(tree, timeout=30)
    for p in alive:
        p.kill()
    assert not alive, f"left running after SIGTERM: {[p.cmdline()[:3] for p in alive]}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect (to the login page) is the answer, not followed


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get(url: str, host: str | None = None, timeout: float = 240) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _ready(url: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    port = int(re.search(r":(\d+)/", url).group(1))
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"{url} never listened")


def _kernels(proc: subprocess.Popen) -> list[psutil.Process]:
    out = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if any("ipykernel" in part for part in p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _tree_rss(proc: subprocess.Popen) -> int:
    total = 0
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_twelve_clients_at_once_are_served_or_told_busy_and_idle_kernels_are_culled():
    proc, url = _start("--port", str(free_port()), "--max-sessions", "3", "--idle-timeout", "6")
    try:
        _ready(url)
        assert _get(url, host="evil.example")[0] == 403  # a DNS-rebinding page names another host: refused
        time.sleep(1)
        idle_rss = _tree_rss(proc)
        with ThreadPoolExecutor(12) as pool:  # plain HTTP clients that never open the page's websocket
            replies = list(pool.map(lambda _: _get(url), range(12)))
        codes = sorted(code for code, _ in replies)
        print(f"\n12 clients at once, cap 3: {codes}")
        assert set(codes) <= {200, 503} and 1 <= codes.count(200) <= 3, codes
        busy = next(body for code, body in replies if code == 503)
        assert "busy" in busy and "Try again" in busy
        served = next(body for code, body in replies if code == 200)
        assert "Traceback" not in served and "Efficiency Workbench" in served and "application/vnd.jupyter.widget-view+json" in served
        deadline = time.monotonic() + 60
        while _kernels(proc) and time.monotonic() < deadline:
            time.sleep(1)
        left = _kernels(proc)
        assert not left, f"{len(left)} idle kernel(s) outlived the 6 s culling time by 60 s"
        rss = _tree_rss(proc)
        print(f"server memory: {idle_rss / 2**20:.0f} MiB before, {rss / 2**20:.0f} MiB after the sessions")
        assert rss < idle_rss * 1.25 + 50 * 2**20
        assert _get(url)[0] == 200  # room again
    finally:
        _stop(proc)
    from workbench.paths import cache_dir

    with sqlite3.connect(cache_dir() / "app-results.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_beyond_loopback_a_token_is_generated_and_required():
    proc, url = _start("--port", str(free_port()), "--host", "0.0.0.0", "--idle-timeout", "5")
    try:
        assert "?token=" in url
        token = url.split("?token=")[1]
        assert len(token) >= 24
        local = url.split("//")[1].split(":")[1].split("/")[0]
        _ready(url.replace(url.split("//")[1].split(":")[0], "127.0.0.1"))
        base = f"http://127.0.0.1:{local}/"
        code, _ = _get(base)
        assert code in (302, 403), code  # no page without the token: sent to the login page
        assert _get(f"{base}?token=wrong-token-value")[0] != 200
        assert _get(f"{base}?token={token}")[0] == 200
        assert token not in " ".join(" ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True))
    finally:
        _stop(proc)


def test_a_port_in_use_is_a_clear_error_not_another_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "workbench", "app", "--port", str(port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in run.stderr and "--port 0" in run.stderr
    assert "Traceback" not in run.stderr
