"""mbackup: back up and restore Milvus collections. See ARCHITECTURE.md for the package map."""

import logging
from typing import Any

# A library logs nowhere until its application says where (logs.py does, for the command line):
# without this, logging's last resort would print warnings a second time on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # Looked up on first use: the CLI installs its SIGTERM handler (cli/signals.py) only once
    # this package is imported, and the engine is the heaviest module to load.
    if name == "__version__":
        try:
            # The version lives in Cargo.toml alone; the engine carries it (py/mod.rs).
            from ._engine import __version__ as version
        except ImportError:  # run from a source tree whose engine was never built
            return "0+unknown"
        return version
    raise AttributeError(name)
