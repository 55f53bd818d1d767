"""``python -m bot serve --workers N``: N webhook processes sharing one listening socket.

The socket is bound once, before forking, so every process accepts from the same queue:
any update may reach any process, and connections waiting when a process dies are taken
by the others. Per-chat order does not rest on which process gets what: a chat's turn
holds a database lock (:meth:`bot.storage.Store.chat`). The parent only supervises: a
process killed by a signal is started again; one that exits with an error (a wrong
token, a database behind the code) stops them all, since restarting would fail the same
way. SIGTERM or SIGINT to the parent stops every process, each after its update in hand.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import tornado.netutil
from prometheus_client import multiprocess

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
Child = Callable[[int, list[socket.socket]], int]  # (index, sockets) -> exit code


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this process when the supervisor dies, even by SIGKILL (Linux), so no
    worker is left holding the port and the database."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before that
        os._exit(1)


def supervise(workers: int, port: int, address: str, child: Child) -> int:
    """Run ``child`` in ``workers`` forked processes on one socket bound to ``address``:
    ``port``; the first error exit code once they have all ended, else 0."""
    sockets = tornado.netutil.bind_sockets(port, address)
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    failure = 0

    parent = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: its own event loop, engine and signal handlers
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _stop_with_parent(parent)
            code = 1
            try:
                code = child(index, sockets)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        spawn(index)
    log.info("serving with %d worker processes", workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # counters stay
        if os.WIFSIGNALED(status) and not stopping:
            log.warning(
                "worker %d killed by signal %d; starting it again", index, os.WTERMSIG(status)
            )
            time.sleep(0.2)  # a crash loop must not spin
            spawn(index)
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            failure = failure or os.WEXITSTATUS(status)
            if not stopping:
                log.error("worker %d exited with %d; stopping", index, os.WEXITSTATUS(status))
                stop(signal.SIGTERM, None)
    for sock in sockets:
        sock.close()
    return failure
