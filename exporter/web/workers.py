"""The threads that answer requests: kept between requests, grown on demand, shrunk when idle.

Starting a thread per request makes the event loop wait until the new thread runs, which takes
GIL hand-offs between the two; under load (a render, poll workers) each hand-off can wait a
switch interval. Idle workers waiting on a queue cost nothing and take a request at once. A
request finding no idle worker starts one (up to `limit`, beyond which requests queue until a
worker is free); a worker idle for `idle_s` ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("cams_exporter.web")

Job = Callable[[], None]


class WorkerPool:
    """An elastic pool of daemon threads; thread-safe."""

    def __init__(self, name: str, limit: int = 128, idle_s: float = 60.0) -> None:
        self._name = name
        self._limit = limit
        self._idle_s = idle_s
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Job) -> None:
        """Run `job` in a worker; RuntimeError if no thread can be started when one is needed."""
        with self._lock:
            start = self._idle == 0 and self._threads < self._limit
            if start:
                self._threads += 1
            else:
                self._idle = max(0, self._idle - 1)  # an idle worker takes it
        if start:
            thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:
                with self._lock:
                    self._threads -= 1
                raise
        self._jobs.put(job)

    def stop(self) -> None:
        """Ask every worker to end once the queue is drained."""
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            try:
                job()
            except Exception:  # a bug in one answer must not end the worker
                log.exception("a request handler failed")
            with self._lock:
                self._idle += 1
