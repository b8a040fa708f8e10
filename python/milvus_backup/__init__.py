"""mbackup: back up and restore Milvus collections. See ARCHITECTURE.md for the package map."""

import logging
from importlib import metadata

try:
    # The version lives in Cargo.toml alone: maturin gives it to the package metadata.
    __version__ = metadata.version("mbackup")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# A library logs nowhere until its application says where (logs.py does, for the command line):
# without this, logging's last resort would print warnings a second time on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())
