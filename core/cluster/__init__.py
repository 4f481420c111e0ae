"""Past one machine: the implementations behind the seams that let several cores share one PostgreSQL
and one NATS — the JetStream job queue, where each job runs (and the cores reach one another to follow
it), control messages between cores, and the shared rate limiter."""
