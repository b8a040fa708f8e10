"""mbackup: back up and restore Milvus collections. See ARCHITECTURE.md for the package map."""

from importlib import metadata

try:
    # The version lives in Cargo.toml alone: maturin gives it to the package metadata.
    __version__ = metadata.version("mbackup")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
