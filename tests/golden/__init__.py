"""Golden backups: real Milvus 2.3.5 binlogs in meta as the Go tool writes it for each Milvus
line, generated at test time (see generate.py); nothing binary is committed."""
