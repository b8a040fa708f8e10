"""mbackup: back up and restore Milvus collections. See ARCHITECTURE.md for the package map."""

import logging
from typing import Any

# A library logs nowhere until its application says where (logs.py does, for the command line):
# without this, logging's last resort would print warnings a second time on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # Looked up on first use: importlib.metadata takes ~0.1 s to import, and the CLI installs
    # its SIGTERM handler (cli/signals.py) only once this package is imported.
    if name == "__version__":
        from importlib import metadata

        try:
            # The version lives in Cargo.toml alone: maturin gives it to the package metadata.
            return metadata.version("mbackup")
        except metadata.PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(name)
