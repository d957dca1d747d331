"""In-transaction helpers: they take the caller's session (or batch) and never open a transaction of
their own — the ledger applier (`ledger.LedgerBatch`), commissions, the outbox (`events.emit`),
idempotency keys, the lean load/write statements and id minting."""
