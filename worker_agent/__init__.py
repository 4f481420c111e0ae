"""The ashao worker agent: the program a GPU owner runs to serve jobs of the network.

It reaches the core only through the generated gRPC stubs (``ashao.v1``), exactly as an agent
written in another language would.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the worker agent raises."""
