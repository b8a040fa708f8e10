"""Where objects live: locations opened from URLs by backend plugins, error diagnosis, and
leftovers of interrupted runs. Storage knowledge lives here and in ``backends/``."""

# Third-party backends (examples/mbackup-fsspec) import these from milvus_backup.storage.
from .location import Location, ObjectInfo, StorageError, StorageUrl, split_url
from .registry import StorageTarget

__all__ = ["Location", "ObjectInfo", "StorageError", "StorageTarget", "StorageUrl", "split_url"]
