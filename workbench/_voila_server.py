"""The Voila server `workbench app` starts (`python -m workbench._voila_server NOTEBOOK [voila options]`).

Voila with four things it lacks: Host-header checks when bound to loopback (Voila turns them off for every
address), a cap on concurrent sessions answered with a "busy, try again" page (503) instead of one more kernel,
the cap as an option like Voila's own, and the token read from the environment (WORKBENCH_APP_TOKEN) so that it
is not on a command line other users can read."""

from __future__ import annotations

import os

import tornado.web
from jupyter_core.utils import ensure_async
from traitlets import Integer
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from ._net import is_loopback

BUSY = """<!doctype html><html><head><meta charset="utf-8"><title>Busy</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h2>The workbench is busy</h2><p>This dashboard serves {sessions} at once and all are in use. Try again in a minute:
idle sessions are closed after {idle}.</p></body></html>"""


class _Sessions:
    """Pages admitted whose kernel has not started yet (the server is one event loop: no lock needed)."""

    def __init__(self) -> None:
        self.starting = 0


class _AdmittedKernelManager:
    """The kernel manager as one admitted page sees it: starting its kernel ends its admission."""

    def __init__(self, manager, release) -> None:
        self._manager, self._release = manager, release

    def __getattr__(self, name):
        return getattr(self._manager, name)

    async def start_kernel(self, **kwargs):
        try:
            return await ensure_async(self._manager.start_kernel(**kwargs))
        finally:
            self._release()


class CappedVoilaHandler(TornadoVoilaHandler):
    """The dashboard page: refused with 503 while `max_sessions` sessions run or are starting."""

    _admitted = False

    @property
    def kernel_manager(self):
        manager = self.settings["kernel_manager"]
        return _AdmittedKernelManager(manager, self._release) if self._admitted else manager

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            self.settings["workbench_sessions"].starting -= 1

    @tornado.web.authenticated
    async def get(self, path=None):
        cap, sessions = self.settings.get("workbench_max_sessions", 0), self.settings["workbench_sessions"]
        if cap and len(self.settings["kernel_manager"].list_kernel_ids()) + sessions.starting >= cap:
            idle = self.settings.get("workbench_idle_s", 0)
            self.set_status(503)
            self.set_header("Retry-After", "60")
            self.set_header("Content-Type", "text/html")
            self.finish(BUSY.format(sessions=f"{cap} session" + "s" * (cap != 1), idle=f"{idle} s without a page" if idle else "their page closes"))
            return
        sessions.starting += 1  # counted from now: pages arriving together cannot all pass the check
        self._admitted = True
        try:
            await super().get(path)
        finally:
            self._release()


class WorkbenchVoila(Voila):
    max_sessions = Integer(0, config=True, help="the most dashboard sessions (kernels) at once; 0: no cap")

    aliases = {**Voila.aliases, "max-sessions": "WorkbenchVoila.max_sessions"}

    def init_settings(self) -> dict:
        if self.token is None and os.environ.get("WORKBENCH_APP_TOKEN"):  # from the environment, not in `ps`
            self.token = os.environ.pop("WORKBENCH_APP_TOKEN")
        settings = super().init_settings()
        # Voila sets allow_remote_access=True whatever the address; on loopback a request must name a local host
        # (a DNS-rebinding page cannot reach the server); beyond it a token guards the server (app.py requires one)
        settings["allow_remote_access"] = not is_loopback(self.ip)
        settings["workbench_max_sessions"] = self.max_sessions
        settings["workbench_sessions"] = _Sessions()
        settings["workbench_idle_s"] = self.kernel_manager.cull_idle_timeout
        return settings

    def init_handlers(self) -> list:
        return [(pattern, CappedVoilaHandler, *rest) if handler is TornadoVoilaHandler else (pattern, handler, *rest)
                for pattern, handler, *rest in super().init_handlers()]


if __name__ == "__main__":
    WorkbenchVoila.launch_instance()
