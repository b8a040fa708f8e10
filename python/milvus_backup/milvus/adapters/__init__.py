"""Milvus-version adapters: everything that differs between Milvus lines lives here.

An adapter is returned by the ``mbackup_milvus_adapter`` hook for a connected server; the
backup and restore flows only talk to :class:`~milvus_backup.milvus.adapters.base.MilvusAdapter`.
"""
