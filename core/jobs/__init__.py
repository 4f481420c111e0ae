"""Jobs: admission, the board of live jobs and their queue, dispatch to workers, transitions and
settlement, the reaper, queries, and the system that assembles them (``JobSystem``)."""
