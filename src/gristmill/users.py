"""Who a user id is, in messages and records: its login name, ``uid N`` when it has none.

One answer for every place that names a user (a run directory's owner, a store one
cannot read, who steered a run), so that a message and a record say the same.
"""

from __future__ import annotations


def user_name(uid: int) -> str:
    """The login name of ``uid`` (``uid N`` when the system has none for it)."""
    try:
        import pwd
    except ImportError:  # Windows
        return str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
