"""``python -m worker_agent``: run the worker agent."""

from worker_agent.main import main

raise SystemExit(main())
