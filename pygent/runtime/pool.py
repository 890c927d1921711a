"""The warm pool: Docker sandboxes started ahead of time, so a new session does not wait.

What a new sandbox waits for, measured here (bench/bench_pool.py): creating the
container ~10 ms, *starting* it ~210 ms (namespaces, cgroups, mounts), the shell and
its killer ~40 ms. Docker cannot add a mount to a running container, and the workspace
is a mount, so the pool keeps whole sandboxes, each with the workspace it will serve:

- a fresh scratch folder bind-mounted at /workspace: copy-mode and terminal sessions
  (the key is the container options);
- a fresh copy-on-write overlay over one user folder: copy-on-write sessions of that
  folder (the key is the options and the folder). The pool learns folders from the
  sessions that open them; the first session of a folder starts cold.

A sandbox is used once: ``take`` hands it to one session, whose close removes it. A
pooled container never held anything of another session (a fresh container, a fresh
folder or upper layer, a fresh /tmp). Idle ones are named ``pygent-pool-*`` and carry
the same owner labels as every container, so the reaper removes them once their
process is gone; :meth:`SandboxPool.status` counts them for ``pygent serve --status``.
The pool is owned by a long-running session host: ``SessionService.pool``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygent.errors import PygentError
from pygent.runtime.loop import LoopThread
from pygent.runtime.overlay import OverlayLayers
from pygent.runtime.scratch import make_scratch_dir, remove_scratch_dir

if TYPE_CHECKING:
    from pygent.runtime.docker_backend import DockerBackend, DockerOptions
    from pygent.settings import Settings

log = logging.getLogger(__name__)

#: Name prefix of idle pooled containers (a taken one is renamed ``pygent-<pid>-...``).
POOL_PREFIX = "pygent-pool"
#: At most this many different (options, folder) keys are kept warm; the least recently
#: asked-for one is dropped first.
MAX_KEYS = 4
#: After a failed start, a key is not tried again for this long (seconds).
RETRY_AFTER = 30.0
#: How long starting one sandbox may take before the pool gives up on it (seconds).
START_TIMEOUT = 120.0


@dataclass
class WarmSandbox:
    """A started sandbox waiting for a session: its loop thread, backend and workspace."""

    loop: LoopThread
    backend: DockerBackend
    base: Path  # its scratch folder (the bind-mounted workspace, or unused under an overlay)
    overlay: OverlayLayers | None
    made_at: float

    def discard(self) -> None:
        """Remove the container, its loop thread and its folders (blocking)."""
        try:
            self.loop.call(self.backend.close(), timeout=60)
        except Exception as exc:  # noqa: BLE001 - best effort at close; the reaper follows
            log.warning("could not close a pooled sandbox: %s", exc)
        finally:
            self.loop.stop()
            remove_scratch_dir(self.base)
            if self.overlay is not None:
                self.overlay.remove()


@dataclass
class _Demand:
    options: DockerOptions
    lower: Path | None
    last: float
    failed_at: float = 0.0


def pool_key(options: DockerOptions, lower: Path | None) -> str:
    """The key sandboxes are pooled under: every container option and the folder."""
    fields = dataclasses.asdict(options)
    return json.dumps({"options": fields, "lower": str(lower) if lower else None}, sort_keys=True)


class SandboxPool:
    """Keeps ``size`` started sandboxes per recently used key; refills in the background.

    Args:
        settings: the host's settings (data folder, output limit).
        size: sandboxes kept warm per key (0 turns the pool off).
        idle: seconds after the last request for a key before its sandboxes are removed.
    """

    def __init__(self, settings: Settings, *, size: int, idle: float) -> None:
        self.settings = settings
        self.size = size
        self.idle = idle
        self.hits = 0
        self.misses = 0
        self._ready: dict[str, collections.deque[WarmSandbox]] = {}
        self._demand: collections.OrderedDict[str, _Demand] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._building = 0
        self._thread = threading.Thread(target=self._work, name="pygent-pool", daemon=True)
        self._started = False
        #: The engine cannot see this machine's folders (a remote engine): pooled
        #: sandboxes get a transferred workspace, and none is kept per folder.
        self.transfers = False

    # -- the session side ---------------------------------------------------------------

    def start(self, warm: DockerOptions | None = None) -> None:
        """Start the refill thread; ``warm``: options to start sandboxes for at once."""
        if warm is not None:
            self.want(warm, None)
        if not self._started:
            self._started = True
            self._thread.start()

    def want(self, options: DockerOptions, lower: Path | None) -> str:
        """Note that a session asked for this kind of sandbox (the pool refills it)."""
        key = pool_key(options, lower)
        with self._cond:
            demand = self._demand.pop(key, None) or _Demand(options, lower, 0.0)
            demand.last = time.monotonic()
            self._demand[key] = demand  # most recent last
            while len(self._demand) > MAX_KEYS:
                old, _ = self._demand.popitem(last=False)
                self._drop_later(old)
            self._cond.notify_all()
        return key

    def take(self, options: DockerOptions, lower: Path | None) -> WarmSandbox | None:
        """A started sandbox for these options and folder, or None (start one cold).

        The sandbox is the caller's from now on: a Runtime adopts it (``pooled=``)."""
        if self.size <= 0 or self._stopping:
            return None
        key = self.want(options, lower)
        with self._cond:
            queue = self._ready.get(key)
            warm = queue.popleft() if queue else None
            self._cond.notify_all()  # refill
        if warm is None:
            self.misses += 1
            return None
        if not self._usable(warm):
            self.misses += 1
            warm.discard()
            return None
        # The rename (10-25 ms here) is not worth the session's wait: it runs beside it.
        warm.loop.submit(asyncio.to_thread(warm.backend.claim_sync))
        self.hits += 1
        log.info("session sandbox taken from the warm pool (%s)", warm.backend.container_name)
        return warm

    def status(self) -> dict[str, Any]:
        """Counts for ``pygentHost/status``."""
        with self._cond:
            idle = sum(len(q) for q in self._ready.values())
            keys = len(self._demand)
            building = self._building
        return {
            "size": self.size,
            "idleSeconds": self.idle,
            "ready": idle,
            "starting": building,
            "keys": keys,
            "hits": self.hits,
            "misses": self.misses,
        }

    def close(self) -> None:
        """Stop refilling and remove every idle sandbox (blocking); safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout=START_TIMEOUT + 10)
        with self._cond:
            left = [w for q in self._ready.values() for w in q]
            self._ready.clear()
        for warm in left:
            warm.discard()

    # -- the refill thread --------------------------------------------------------------

    def _drop_later(self, key: str) -> None:
        """Under the lock: forget a key; its idle sandboxes are removed by the thread."""
        self._demand.pop(key, None)

    def _usable(self, warm: WarmSandbox) -> bool:
        """A quick look that the pooled container still runs (it may have been removed)."""
        backend = warm.backend
        client, cid = backend._client, backend.container_id
        if client is None or cid is None:
            return False
        try:
            state = client.api.inspect_container(cid)["State"]
        except Exception as exc:  # noqa: BLE001 - any failure: not usable, start another
            log.info("pooled sandbox %s is gone: %s", backend.container_name, exc)
            return False
        return bool(state.get("Running")) and not state.get("Paused")

    def _next_job(self) -> tuple[str, _Demand] | None:
        """Under the lock: the key most in need of a sandbox, expiring idle keys first."""
        now = time.monotonic()
        for key in [k for k, d in self._demand.items() if now - d.last > self.idle]:
            log.info("warm pool: no session asked for %s for %gs", key[:80], self.idle)
            del self._demand[key]
        for key, demand in reversed(self._demand.items()):  # most recently asked first
            if now - demand.failed_at < RETRY_AFTER:
                continue
            if len(self._ready.get(key, ())) < self.size:
                return key, demand
        return None

    def _expired(self) -> list[WarmSandbox]:
        """Under the lock: idle sandboxes whose key is no longer wanted."""
        out: list[WarmSandbox] = []
        for key in [k for k in self._ready if k not in self._demand]:
            out.extend(self._ready.pop(key))
        return out

    def _probe(self) -> None:
        """Does the engine see our folders? (In the pool's thread: it may ask the engine.)"""
        from pygent.runtime.remote import workspace_mode

        with self._cond:
            first = next(iter(self._demand.values()), None)
        image = first.options.image if first is not None else self.settings.image
        try:
            self.transfers = workspace_mode(self.settings.workspace_mode, image) == "transfer"
        except PygentError as exc:
            log.warning("warm pool: %s", exc.user_message())

    def _work(self) -> None:
        self._probe()
        while True:
            with self._cond:
                if self._stopping:
                    return
                expired = self._expired()
                job = None if expired else self._next_job()
                if job is None and not expired:
                    self._cond.wait(timeout=min(5.0, max(0.5, self.idle / 4)))
                    continue
                if job is not None:
                    self._building += 1
            for old in expired:
                old.discard()
            if job is None:
                continue
            key, demand = job
            warm: WarmSandbox | None
            try:
                warm = self._build(demand)
            except Exception as exc:  # noqa: BLE001 - the pool must outlive any failed start
                why = exc.user_message() if isinstance(exc, PygentError) else repr(exc)
                log.warning("warm pool: could not start a sandbox: %s", why)
                warm = None
                demand.failed_at = time.monotonic()
            finally:
                with self._cond:
                    self._building -= 1
            if warm is None:
                continue
            with self._cond:
                if self._stopping or key not in self._demand:
                    keep = False
                else:
                    self._ready.setdefault(key, collections.deque()).append(warm)
                    keep = True
                self._cond.notify_all()
            if not keep:
                warm.discard()

    def _build(self, demand: _Demand) -> WarmSandbox:
        """Start one sandbox (blocking, on its own loop thread)."""
        from pygent.runtime.docker_backend import DockerBackend

        loop = LoopThread(name="pygent-runtime")
        base = make_scratch_dir()
        overlay = None
        backend: DockerBackend | None = None
        try:
            if demand.lower is not None:
                overlay = OverlayLayers.create(self.settings.data_dir, demand.lower)
            backend = DockerBackend(
                base, demand.options, output_limit=self.settings.output_limit, overlay=overlay,
                transfer=self.transfers,
            )
            backend.name_prefix = POOL_PREFIX
            loop.call(backend.start(), timeout=START_TIMEOUT)
        except BaseException:
            if backend is not None:
                try:
                    loop.call(backend.close(), timeout=60)
                except Exception as exc:  # noqa: BLE001 - the start failure is what counts
                    log.warning("closing a failed pooled sandbox: %s", exc)
            loop.stop()
            remove_scratch_dir(base)
            if overlay is not None:
                overlay.remove()
            raise
        log.info("warm pool: %s ready", backend.container_name)
        return WarmSandbox(loop, backend, base, overlay, time.monotonic())

