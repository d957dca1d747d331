"""Use cases, one module per domain: what `api/` (and the CLI) call. Each takes keyword-only arguments,
opens one unit of work, calls the engine and applies its decision (docs/architecture.md)."""
