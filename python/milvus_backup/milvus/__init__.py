"""Talking to Milvus: the connection, and one adapter per Milvus line (``adapters/``).
Milvus knowledge lives here."""
