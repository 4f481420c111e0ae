"""The composition root of the core: store → coordinator → servicers → server."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import grpc

from core.accounts import AccountService
from core.auth import Accounts, SignInSettings
from core.config import CoreSettings
from core.coordinator import Coordinator
from core.economics import TIERS
from core.images import ImageService
from core.ledger import Ledger
from core.moderation import Moderator
from core.pricing import PriceBoard
from core.providers import Cascade, NetworkProvider, hosted_providers
from core.ratelimit import RateLimiter
from core.relay import Relay, RelayDocuments
from core.safety import SafetyLedger
from core.server import build_server
from core.signing import Signer
from core.store import Store
from core.treasury import Treasury
from core.vitals import LoopLag, Vitals

log = logging.getLogger("ashao.core")


class CoreApp:
    """The running core. ``start()``, then ``wait()`` or ``shutdown()``."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self._stopped = asyncio.Event()
        self._shutting_down = False
        self.store = Store(
            settings.data_dir / "ashao.db",
            synchronous=settings.db_synchronous,
            max_batch=settings.commit_max_batch,
        )
        self.ledger = Ledger(self.store)
        self.accounts = Accounts(
            store=self.store,
            signin=SignInSettings(
                domain=settings.signin_domain,
                uri=settings.signin_uri,
                chain_id=settings.signin_chain_id,
                session_ttl_s=settings.session_ttl_s,
            ),
            data_dir=settings.data_dir,
        )
        self.account_service = AccountService(store=self.store, accounts=self.accounts, ledger=self.ledger)
        self.coordinator = Coordinator(settings=settings, store=self.store, ledger=self.ledger)
        self.images = ImageService(
            coordinator=self.coordinator,
            store=self.store,
            accounts=self.accounts,
            timeout_s=settings.image_timeout_s,
        )
        self.treasury = Treasury(
            store=self.store, ledger=self.ledger, interval_s=settings.snapshot_interval_s
        )
        self.signer = Signer.load_or_create(settings.data_dir)
        self.safety = SafetyLedger(self.store)
        self.moderator = Moderator.from_file(
            settings.moderation_policy,
            classifier_url=settings.moderation_classifier_url,
            classifier_key=os.environ.get(settings.moderation_classifier_key_env, ""),
            classifier_failure=settings.moderation_classifier_failure,
        )
        floor = NetworkProvider(
            coordinator=self.coordinator,
            tier=settings.relay_floor_tier,
            model_id=TIERS[settings.relay_floor_tier].model,
        )
        self.cascade = Cascade(
            [*hosted_providers(settings.relay_providers), floor],
            threshold=settings.relay_breaker_threshold,
            cooldown_s=settings.relay_breaker_cooldown_s,
        )
        self.limiter = RateLimiter(
            per_principal=(settings.relay_rate_per_principal, settings.relay_burst_per_principal),
            per_ip=(settings.relay_rate_per_ip, settings.relay_burst_per_ip),
            daily_quota=settings.relay_daily_quota,
        )
        self.relay = Relay(
            persona=settings.relay_persona,
            signer=self.signer,
            moderator=self.moderator,
            safety=self.safety,
            cascade=self.cascade,
            limiter=self.limiter,
            accounts=self.accounts,
            ledger=self.ledger,
            store=self.store,
            prices=PriceBoard(default_output_tokens=TIERS[settings.relay_floor_tier].max_tokens),
            require_auth=settings.relay_require_auth,
            billing_gate=settings.relay_billing_gate,
            floor_required=settings.relay_floor_required,
            max_message_chars=settings.relay_max_message_chars,
        )
        self.lag = LoopLag()
        self.vitals = Vitals(
            coordinator=self.coordinator,
            ledger=self.ledger,
            treasury=self.treasury,
            cascade=self.cascade,
            moderator=self.moderator,
            limiter=self.limiter,
            safety=self.safety,
            store=self.store,
            lag=self.lag,
            started=time.monotonic(),
            serving=lambda: self._server is not None and not self._shutting_down,
        )
        self.documents = RelayDocuments(
            relay=self.relay, vitals=self.vitals, endpoint=settings.relay_endpoint
        )

    @property
    def address(self) -> str:
        """``host:port`` the server listens on."""
        host = self.settings.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Open the store, recover jobs, start serving."""
        await self.store.open()
        await self.ledger.load()
        await self.accounts.load()
        await self.safety.load()
        await self.coordinator.start()
        self.treasury.start()
        self.lag.start()
        self._server, self.port = build_server(self)
        await self._server.start()
        log.info("core listening on %s (data in %s)", self.address, self.settings.data_dir)

    async def wait(self) -> None:
        """Until shutdown."""
        await self._stopped.wait()

    async def shutdown(self, grace: float = 3.0) -> None:
        """Stop accepting, let calls finish for ``grace`` seconds, then close the store. Idempotent."""
        if self._shutting_down:
            await self._stopped.wait()
            return
        self._shutting_down = True
        try:
            if self._server is not None:
                await self._server.stop(grace)
            await self.treasury.shutdown()
            await self.lag.shutdown()
            await self.moderator.aclose()
            await self.cascade.aclose()
            await self.coordinator.shutdown()
            await self.store.close()
        finally:
            self._stopped.set()
