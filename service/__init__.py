"""The imperative shell: load what the engine needs, apply its decision in one transaction.

Seams (docs/architecture.md, "Where things go"):

- `service.usecases` — one module per domain; each public function is one use case (keyword-only
  arguments, one unit of work, an idempotency key where it is retryable): what `api/` calls.
- `service.tx` — helpers that run inside a caller's transaction and never open one: the ledger
  applier, commissions, the outbox, idempotency keys, the lean load/write statements, ids.
- `service.reads` — read models for the API and exports. A read whose name ends in `_caught_up` first
  applies the due work of what it reads (GB-11 expiries, the event feed's sequencing) in transactions of
  its own: it may write.
- `service.jobs` — background work nobody waits for: the due-work worker, its heartbeat, the event-feed
  sequencer.

At the top: the shell's plumbing (settings, clock, services context, unit of work, availability,
metrics, currencies, webhook target policy).
"""
