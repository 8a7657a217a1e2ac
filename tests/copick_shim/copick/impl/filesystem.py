"""copick.impl.filesystem's names, bound to copickfs's classes."""

from copickfs.copick import *  # noqa: F403
from copickfs.copick import __all__  # noqa: F401
