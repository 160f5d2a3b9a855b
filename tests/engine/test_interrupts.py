"""SignalGuard: a Ctrl-C stops the run, but waits while writes that belong together are made."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from gristmill.engine.interrupts import Interrupted, SignalGuard


def test_a_signal_outside_a_section_interrupts_at_once() -> None:
    guard = SignalGuard()
    with pytest.raises(Interrupted, match="SIGTERM"), guard.handling():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the old handler is back


def test_inside_a_section_the_signal_waits_for_the_outermost_section_to_end() -> None:
    guard = SignalGuard()
    reached: list[str] = []

    def nested() -> None:
        with guard.section():
            with guard.section():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("inner")
            reached.append("outer")  # the inner section does not raise it
        reached.append("after")  # never: it is raised as the outer section ends

    with guard.handling(), pytest.raises(Interrupted, match="SIGINT"):
        nested()
    assert reached == ["inner", "outer"]
    assert guard.critical  # cleaning up now: a second Ctrl-C is dropped
    with guard.handling():
        os.kill(os.getpid(), signal.SIGINT)  # dropped: no exception
    assert guard.deferred == signal.SIGINT


def test_an_exception_leaving_a_section_is_not_replaced_by_the_deferred_signal() -> None:
    guard = SignalGuard()

    def failing_write() -> None:
        with guard.section():
            os.kill(os.getpid(), signal.SIGTERM)
            raise ValueError("disk full")

    with guard.handling(), pytest.raises(ValueError, match="disk"):
        failing_write()
    assert guard.deferred == signal.SIGTERM
    assert not guard.critical


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    guard = SignalGuard()
    seen: list[object] = []
    before = signal.getsignal(signal.SIGINT)

    def body() -> None:
        with guard.handling():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]
