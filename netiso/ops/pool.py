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
* **Ctrl-C does not wait for the rest.** On any exception in the calling thread the executor is
  shut down without waiting; requests already in flight end within their timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from netiso.errors import NetisoError
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
    are reported). Returns the items never started.
    """
    workers = max(1, workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netiso")
    pending: dict[Future[R], T] = {}
    index = 0
    stop = False
    try:
        while True:
            while not stop and index < len(items) and len(pending) < workers:
                pending[pool.submit(work, items[index])] = items[index]
                index += 1
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                exc = fut.exception()
                if exc is not None and ends_the_run(exc):
                    stop = True
                on_done(item, None if exc is not None else fut.result(), exc)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return list(items[index:])
