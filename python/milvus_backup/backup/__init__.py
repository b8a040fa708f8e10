"""Backups under a backup root: create, restore, verify, the catalog of backups and the
lock every command that changes a backup holds."""
