"""Token fan-out: each job's append-only event log, the bus that makes logs findable, and the readers
that serve them to many subscribers at once."""
