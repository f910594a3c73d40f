"""Ctrl-C and SIGTERM become KeyboardInterrupt, held back until a critical section ends."""

from __future__ import annotations

import os
import signal

import pytest

from recsys_cl.interrupts import handle_interrupts, uninterrupted


def test_sigterm_inside_a_section_is_raised_when_it_ends() -> None:
    reached = []
    with handle_interrupts():
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            with uninterrupted():
                with uninterrupted():
                    os.kill(os.getpid(), signal.SIGTERM)
                reached.append("inner end")  # still inside the outer section
            reached.append("not reached")
        # Outside any section, the signal interrupts at once.
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            reached.append("not reached either")
    assert reached == ["inner end"]


def test_a_section_ending_in_an_error_keeps_its_error() -> None:
    with handle_interrupts(), pytest.raises(ValueError, match="store failed"):
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("store failed")


def test_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with handle_interrupts():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
