"""Text from a task (its logs, its error messages) made safe to show on a terminal.

A task writes whatever it likes to its logs, and ``gristmill status``, ``logs`` and the
end-of-run summary show parts of them: an escape sequence there could retitle, clear
or reprogram the reader's terminal. Every control character but tab and newline (C0,
DEL and C1) is shown as ``\\xNN`` instead.
"""

from __future__ import annotations

import re

#: C0 controls but ``\t`` and ``\n``, DEL and C1: what a terminal may act upon.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """``text`` with every control character a terminal acts upon shown as ``\\xNN``."""
    return CONTROL.sub(_escaped, text)
