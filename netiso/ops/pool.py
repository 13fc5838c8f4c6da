"""Bounded concurrent work for commands that act on many namespaces or objects.

Design decisions:

* **At most ``workers`` items are in flight, none queued.** A queue ahead of the workers would
  keep running after the run decides to stop: a worker that finishes takes the next queued item
  before the caller has even seen the error. With nothing queued, "stop" means no further item
  starts, and every item the run did not reach can be reported as not attempted.
* **Some errors end the run.** An unreachable server, rejected credentials, a resource type the
  server does not serve and an RBAC refusal of a cluster-scoped request fail every remaining
  item the same way; trying them all would only repeat one error hundreds of times. An RBAC
  refusal inside one namespace does not: rights are often granted per namespace (RoleBindings),
  so the next namespace may well be allowed. Other errors (a conflict, a quota, a namespace
  being deleted) belong to their item too, and the run goes on.
* **Ctrl-C stops the run, not the requests in flight.** Nothing further starts; the items
  already in flight finish (each request ends within its timeout) and are reported, so the
  caller can say exactly what was done, and ``RunInterrupted`` names the items never started.
  Abandoning them instead would not make the process end sooner (the interpreter joins the
  pool's threads at exit) and would leave their outcome unknown. A second Ctrl-C abandons them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from typing import TypeVar

from netiso.errors import Interrupted, NetisoError
from netiso.kube import Forbidden, MissingResourceType, Unauthorized, Unreachable

T = TypeVar("T")
R = TypeVar("R")


def ends_the_run(exc: BaseException) -> bool:
    """True for an error every remaining item would hit too (or one netiso does not know)."""
    if isinstance(exc, Forbidden):
        return exc.namespace is None
    if isinstance(exc, Unreachable | Unauthorized | MissingResourceType):
        return True
    return not isinstance(exc, NetisoError)


def summarize_names(items: Sequence[str], limit: int = 8) -> str:
    """`a, b, c (+N more)` for the error line of a run that stopped; `none` when empty."""
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


class RunInterrupted(Interrupted):
    """Ctrl-C ended ``run_bounded``: in-flight items were reported, these never started."""

    def __init__(self, not_started: Sequence[object]) -> None:
        super().__init__()
        self.not_started = list(not_started)


@contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Ctrl-C waits until the block ends: a KeyboardInterrupt landing between an item's submit
    and its bookkeeping, or inside ``on_done`` (after its result was taken, before it was
    recorded), would misreport a finished item. Only the main thread receives signals and may
    set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if hit:
        raise KeyboardInterrupt


def run_bounded(
    items: Sequence[T],
    work: Callable[[T], R],
    on_done: Callable[[T, R | None, BaseException | None], None],
    *,
    workers: int,
) -> list[T]:
    """Run ``work`` on each item, at most ``workers`` at a time, in order of ``items``.

    ``on_done(item, result, error)`` runs in the calling thread as each item finishes. After an
    error for which ``ends_the_run`` holds, nothing further starts (items in flight finish and
    are reported). Returns the items never started. On Ctrl-C, raises ``RunInterrupted`` once
    the items in flight are reported.
    """
    workers = max(1, workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netiso")
    pending: dict[Future[R], T] = {}
    index = 0
    stop = False
    try:
        while True:
            while not stop and index < len(items) and len(pending) < workers:
                # Submitted, recorded and counted as one step: a Ctrl-C between them left an item
                # running that the report called not attempted (seen in CI).
                with _deferred_interrupt():
                    pending[pool.submit(work, items[index])] = items[index]
                    index += 1
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                with _deferred_interrupt():
                    exc = fut.exception()
                    if exc is not None and ends_the_run(exc):
                        stop = True
                    try:
                        on_done(pending[fut], None if exc is not None else fut.result(), exc)
                    finally:  # reported, even if on_done itself stopped half-way
                        del pending[fut]
    except KeyboardInterrupt:
        try:
            for fut in as_completed(list(pending)):
                with _deferred_interrupt():
                    exc = fut.exception()
                    try:
                        on_done(pending[fut], None if exc is not None else fut.result(), exc)
                    finally:
                        del pending[fut]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        raise RunInterrupted(items[index:]) from None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return list(items[index:])
