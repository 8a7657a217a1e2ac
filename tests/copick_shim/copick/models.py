"""copick.models' names, bound to copickfs's models."""

from copickfs.copick.models import *  # noqa: F403
from copickfs.copick.models import __all__  # noqa: F401
