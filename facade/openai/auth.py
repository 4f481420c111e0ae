"""Who calls the OpenAI-compatible API.

OpenAI clients always send ``Authorization: Bearer <key>``: an ashao API key (``ak_…``) or session
token is the caller's, exactly as on the network API. The SDKs refuse to run without some key, so the
key ``anonymous`` (like no Authorization header at all) stands for no credential: the caller is
anonymous, judged by its address, and gets what an anonymous caller of ``/api/chat/send`` gets (the
free tier, rate-limited per address). Any other key that is not a valid credential is 401.
"""

from __future__ import annotations

from starlette.requests import Request

from facade.config import FacadeSettings
from facade.http import credential as network_credential

ANONYMOUS_KEY = "anonymous"
"""The API key that means "no key"."""


def credential(request: Request, settings: FacadeSettings) -> str:
    """The caller's credential ('' for an anonymous caller)."""
    secret = network_credential(request, settings)
    return "" if secret == ANONYMOUS_KEY else secret
