from .__about__ import *  # noqa: F403
