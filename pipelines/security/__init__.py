"""Security: encryption at rest (envelope AES-256-GCM), KEK rotation, crypto-shredding, erasure, audit log.

Submodules are imported on use (``cryptography`` loads only where encryption runs): ``keyring`` (KEKs),
``envelope`` (EncryptedObjectStore, wrap_store, shred_partition), ``rotation`` (rotate_kek, check_kek_age),
``audit`` (write/read/prune, audit_hook), ``purge`` (purge_record), ``cli`` (``python -m pipelines security``).
The ``security`` section is ``pipelines.config.security.SecurityConfig`` (``config.security``).
"""
