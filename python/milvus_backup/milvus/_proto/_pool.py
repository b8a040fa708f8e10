"""The descriptor pool the generated modules register in: mbackup's own, so that pymilvus,
which registers the same message names in protobuf's default pool, can be imported beside it."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
