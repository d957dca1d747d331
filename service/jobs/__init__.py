"""Background jobs nobody waits for: the worker's due work (GB-11, CM-6), its heartbeat, and the event
feed's sequencer."""
