"""Read models: pages and batch loads for the API, reports, listings, exports. Reads decide nothing.
A function whose name ends in `_caught_up` first applies the due work of what it reads (GB-11, the event
feed's sequencer), each in a transaction of its own: it may write; every other read only reads."""
