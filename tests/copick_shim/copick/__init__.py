"""Stand-in for the `copick` package when copick's own test suite runs against copickfs.

Only the names copick's filesystem tests import are here, each resolving to copickfs's
classes; copick's other modules (ops, uri, cli) are deliberately absent.
"""

from copickfs.copick import CopickRootFSSpec

__version__ = "1.31.0+copickfs"


def from_file(path: str) -> CopickRootFSSpec:
    """copick.from_file: a filesystem project from its config file."""
    return CopickRootFSSpec.from_file(path)
