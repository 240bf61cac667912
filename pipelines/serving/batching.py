"""Dynamic batching on a dedicated inference thread.

Requests are submitted from the event loop and queued; one worker thread per batcher takes them in
batches of at most ``max_batch_size`` and runs ``run_batch`` on each batch. The wait is adaptive:

- a request that finds the worker idle and nothing queued is dispatched at once (a lone request
  never pays ``max_wait_ms``);
- otherwise it queues with a deadline of ``max_wait_ms`` from its arrival; when the worker is free it
  takes everything queued, and tops the batch up only until the oldest item's deadline. Requests that
  queued behind a running batch have usually waited that long already, so under load batches leave
  full or at once.

The worker thread runs the model itself: torch releases the GIL inside its kernels, so the event
loop keeps parsing requests while a batch computes, and the per-request Python work on the
inference side is one list append. Results go back to the event loop with one
``call_soon_threadsafe`` per batch. Batchers of one service share ``run_lock`` so that forward passes
of different domains run one at a time (on a CPU two passes side by side only contend for cores).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class BatcherClosed(RuntimeError):
    """The batcher was closed (the service is stopping): the request was not run."""


@dataclass
class _Item:
    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    deadline: float


def _deliver(items: Sequence[_Item], results: Sequence[Any] | None, error: BaseException | None) -> None:
    for i, item in enumerate(items):
        if item.future.done():  # the client went away (cancelled)
            continue
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(results[i])


class DynamicBatcher:
    """Collects items submitted from an event loop and runs them through ``run_batch`` in batches.

    Args:
        run_batch: ``run_batch(payloads) -> results``, called on the worker thread; one result per payload,
            in order (an exception fails every request of that batch).
        max_batch_size: most items per call (1 = one request at a time, same thread and code path).
        max_wait_ms: how long a queued item may wait for company (see the module docstring).
        run_lock: held around every ``run_batch`` call (shared by the batchers of one service).
        on_batch: called after each successful batch with ``(size, seconds)``.
        name: the worker thread's name.
    """

    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch_size: int,
                 max_wait_ms: float, run_lock: threading.Lock | None = None,
                 on_batch: Callable[[int, float], None] | None = None, name: str = "inference") -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be >= 1")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms={max_wait_ms} must be >= 0")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.name = name
        self._run_lock = run_lock or threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    async def submit(self, payload: Any) -> Any:
        """Queue one item and wait for its result.

        Raises:
            BatcherClosed: the batcher is closed.
            Exception: whatever ``run_batch`` raised for the item's batch.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise BatcherClosed("the service is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            immediate = not self._busy and not self._queue
            self._queue.append(_Item(payload, future, loop, now if immediate else now + self.max_wait))
            self._cond.notify()
        return await future

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._busy = False
                self._cond.wait()
            if self._closed:
                return None
            self._busy = True
            first = self._queue.popleft()
            batch = [first]
            while len(batch) < self.max_batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = first.deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                if self._closed:
                    self._queue.extendleft(reversed(batch))
                    return None
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            started = time.perf_counter()
            results: Sequence[Any] | None = None
            error: BaseException | None = None
            try:
                with self._run_lock:
                    results = self.run_batch([item.payload for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - handed to every request of the batch
                error = exc
            if error is None and self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            self._send(batch, results, error)
        with self._cond:
            left, self._queue = list(self._queue), deque()
        self._send(left, None, BatcherClosed("the service is shutting down"))

    @staticmethod
    def _send(items: Sequence[_Item], results: Sequence[Any] | None, error: BaseException | None) -> None:
        by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list[int]]] = {}
        for i, item in enumerate(items):
            by_loop.setdefault(id(item.loop), (item.loop, []))[1].append(i)
        for loop, indices in by_loop.values():
            part = [items[i] for i in indices]
            values = None if results is None else [results[i] for i in indices]
            try:
                loop.call_soon_threadsafe(_deliver, part, values, error)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after its current batch; queued requests fail with ``BatcherClosed``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)
