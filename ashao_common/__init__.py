"""Small pieces every ashao program uses alike (the core, the facade, the worker agent, the CLI).

Nothing here knows about jobs, money or the network: only how files are written safely.
"""
