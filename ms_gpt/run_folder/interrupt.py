"""Ctrl-C and SIGTERM during training: finish the step under way, save a resumable checkpoint, exit 130
(143 for SIGTERM). A second signal exits at once.

MindSpore's graph scheduler installs its own C++ SIGINT handler (``DefaultIntHandler``) at every run of
a compiled graph, i.e. every training step; it turns Ctrl-C into a SIGTERM the process sends itself, which
ends it with nothing saved. The command line keeps SIGINT away from it altogether (:func:`route_sigint`:
SIGINT blocked in every thread before MindSpore starts any, and taken by one helper thread with
``sigwait``), handing it to the training loop's :class:`StopRequests` when one is active and exiting 130 at
once otherwise. In-process use (a notebook, no routing) gets Python handlers from :class:`StopRequests`,
re-armed after every step (:meth:`StopRequests.rearm`). A request is only recorded; the loop acts on it
between steps, where the weights and the optimizer agree.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at ``step`` in ``out``; ``resumable``: the job
    has ``--resume`` (else the message says how to start again instead of promising it)."""

    def __init__(self, signum: int, step: int, out, resumable: bool = True):
        self.signum, self.step, self.out = signum, step, out
        name = signal.Signals(signum).name
        if resumable:
            super().__init__(f"stopped by {name} at step {step}; a resumable checkpoint is saved in {out} "
                             "(continue with the same command and --resume)")
        else:
            super().__init__(f"stopped by {name} at step {step}; the weights of that step are saved in {out}, but "
                             "this command cannot resume: run it again with --overwrite to start over")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_active: list = []  # the StopRequests of the training loop running now (innermost last)
_routing: list = []  # [True] once route_sigint ran


def route_sigint() -> None:
    """Block SIGINT in the calling thread (and so in every thread started after: call it before MindSpore
    starts its thread pools) and take it in a helper thread instead. Main thread only; idempotent."""
    if threading.current_thread() is not threading.main_thread() or _routing:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    threading.Thread(target=_take_sigints, name="ms_gpt-sigint", daemon=True).start()
    _routing.append(True)


def _take_sigints() -> None:
    while True:
        signal.sigwait({signal.SIGINT})
        if _active:
            _active[-1].request(signal.SIGINT)
            continue
        # Outside the training loop (imports, compiling, data loading, evaluation, the final writes) there is
        # nothing consistent to save beyond the last checkpoint, and an exception raised into an import can
        # leave MindSpore half-initialised: exit now. Every file is written atomically, so this is as safe
        # as a kill, and the next run cleans up after it.
        print("\nSIGINT outside a training step: exiting now (the last checkpoint in --out, if any, is kept)",
              file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGINT)


class StopRequests:
    """While active, SIGINT/SIGTERM set :attr:`signum` instead of ending the process; a second signal
    ends it at once with 128 + signal. Outside the main thread (where handlers cannot be set) it is inert."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        _active.append(self)
        return self

    def rearm(self) -> None:
        """Install the handlers again after a step: MindSpore's graph run replaced the SIGINT one at the C
        level, which Python cannot see, so this is done unconditionally (one cheap system call a signal)."""
        for sig in self._previous:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc) -> None:
        if self in _active:
            _active.remove(self)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.request(signum)

    def request(self, signum: int) -> None:
        """Record a stop request (from a handler or the SIGINT thread); the second one exits at once."""
        if self.signum is not None:
            print(f"\n{signal.Signals(signum).name} again: exiting now without saving", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
              "(send it again to exit at once)", file=sys.stderr, flush=True)
