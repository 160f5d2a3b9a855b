"""One failure told for a terminal (:mod:`gristmill.report.failures`)."""

from __future__ import annotations

from pathlib import Path

from gristmill.report.failures import tail


def test_log_lines_shown_on_a_terminal_cannot_drive_it(tmp_path: Path) -> None:
    """A task's stderr ends up in status and the summary: escape sequences are shown, not
    sent (a title change, a screen clear, an 8-bit CSI)."""
    log = tmp_path / "x.err"
    log.write_bytes(b"plain\n\x1b]0;evil\x07title\n\x1b[2Jclear\tkept\n\xc2\x9bcsi\n")
    assert tail(str(log)) == ["plain", "\\x1b]0;evil\\x07title", "\\x1b[2Jclear\tkept",
                              "\\x9bcsi"]
