"""What a backup is on storage: the Go tool's meta model and JSON codec, the key layout, and
the checks every piece of content read back from storage passes."""
