"""Who is calling: wallet sign-in, users, sessions, API keys, the operator, and rate limits per caller."""
