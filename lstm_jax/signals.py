"""Graceful stop on SIGINT (Ctrl-C) and SIGTERM (what SLURM and Kubernetes send before preempting).

:func:`stop_requests` installs handlers that only record the signal; the training loop polls
:attr:`StopRequest.signum` between steps, ends the current step, checkpoints and raises
:class:`Interrupted`. The first signal also puts SIGINT's default action back, so a second Ctrl-C
ends the process at once, even while it waits inside a long XLA computation (the default action is
the kernel's, not a Python handler that waits for the interpreter). A repeated SIGTERM (launchers
often send it to the process and its group) does not cut the checkpoint short.

The context is re-entrant: ``lstm-jax train`` enters it before JAX starts its backend and
compiles (seconds in which a signal is not lost) and ``fit`` enters it again, sharing one request.
Handlers can only be installed from the main thread; elsewhere (a training run in a worker
thread) the context does nothing and the process keeps its own handling.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: The signals a run stops on, with their conventional exit codes (128 + signal number).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A run stopped on a signal after checkpointing; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """The first stop signal received, or ``None``."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


_active: StopRequest | None = None


@contextlib.contextmanager
def stop_requests(signals=STOP_SIGNALS):
    """Record the first of ``signals`` in the yielded :class:`StopRequest`; restore the handlers after."""
    global _active
    if _active is not None:
        yield _active
        return
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame):
        if request.signum is None:
            request.signum = signum
        if signal.SIGINT in previous:  # a second Ctrl-C takes the default action: terminate now
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    # A signal the process ignores (e.g. SIGINT of a `cmd &` in a script) stays ignored.
    previous = {s: signal.getsignal(s) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, handle)
    _active = request
    try:
        yield request
    finally:
        _active = None
        for s, handler in previous.items():
            signal.signal(s, handler)
