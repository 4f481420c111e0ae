"""The composition root of the core: store → money → identity → jobs → images → relay → gRPC server.

Each component is built once here and handed what it needs; background loops run under one
supervisor; shutdown stops admission first, then drains, then closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import grpc

from ashao_common.supervise import Supervisor, every
from core.config import CoreSettings
from core.economics import TIERS
from core.grpc.health import Health
from core.grpc.server import build_server
from core.identity.accounts import AccountService
from core.identity.directory import Directory
from core.identity.ratelimit import RateLimiter
from core.identity.relays import RelayKeys
from core.identity.wallet import SignInSettings, WalletSignIn
from core.images.service import ImageService
from core.jobs.reaper import Reaper
from core.jobs.system import JobSystem
from core.money.ledger import Ledger
from core.money.pricing import PriceBoard
from core.money.treasury import Treasury
from core.relay.cascade import Cascade
from core.relay.documents import RelayDocuments
from core.relay.floor import NetworkProvider
from core.relay.moderation import Moderator
from core.relay.payments import PaymentGate
from core.relay.pipeline import Relay
from core.relay.providers import hosted_providers
from core.relay.safety import SafetyLedger
from core.relay.signing import Signer
from core.relay.vitals import LoopLag, Vitals
from core.store.images import ImageFiles
from core.store.sqlite import SqliteStore

log = logging.getLogger("ashao.core")


class CoreApp:
    """The running core. ``start()``, then ``wait()`` or ``shutdown()``."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._server: grpc.aio.Server | None = None
        self.health = Health()
        """What the standard health service reports: SERVING while serving, NOT_SERVING from shutdown."""
        self.port = 0
        self._stopped = asyncio.Event()
        self._shutting_down = False
        self.store = SqliteStore(
            settings.data_dir / "ashao.db",
            synchronous=settings.db_synchronous,
            max_batch=settings.commit_max_batch,
        )
        self.ledger = Ledger(self.store)
        self.directory = Directory(
            store=self.store, data_dir=settings.data_dir, session_ttl_s=settings.session_ttl_s
        )
        self.wallets = WalletSignIn(
            SignInSettings(
                domain=settings.signin_domain,
                uri=settings.signin_uri,
                chain_id=settings.signin_chain_id,
                session_ttl_s=settings.session_ttl_s,
            )
        )
        self.accounts = AccountService(
            store=self.store, directory=self.directory, wallets=self.wallets, ledger=self.ledger
        )
        self.image_files = ImageFiles(settings.data_dir / "images")
        self.jobs = JobSystem(
            settings=settings, store=self.store, ledger=self.ledger, images=self.image_files
        )
        self.images = ImageService(jobs=self.jobs, files=self.image_files, timeout_s=settings.image_timeout_s)
        self.treasury = Treasury(
            store=self.store, ledger=self.ledger, interval_s=settings.snapshot_interval_s
        )
        self.signer = Signer.load_or_create(settings.data_dir)
        self.relays = RelayKeys.load(settings.data_dir, settings.relay_keys)
        self.safety = SafetyLedger(self.store)
        self.moderator = Moderator.from_file(
            settings.moderation_policy,
            classifier_url=settings.moderation_classifier_url,
            classifier_key=os.environ.get(settings.moderation_classifier_key_env, ""),
            classifier_failure=settings.moderation_classifier_failure,
        )
        floor = NetworkProvider(
            jobs=self.jobs, tier=settings.relay_floor_tier, model_id=TIERS[settings.relay_floor_tier].model
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
        self.prices = PriceBoard(default_output_tokens=TIERS[settings.relay_floor_tier].max_tokens)
        self.relay = Relay(
            persona=settings.relay_persona,
            signer=self.signer,
            moderator=self.moderator,
            safety=self.safety,
            cascade=self.cascade,
            limiter=self.limiter,
            payments=PaymentGate(prices=self.prices, directory=self.directory, ledger=self.ledger),
            prices=self.prices,
            require_auth=settings.relay_require_auth,
            billing_gate=settings.relay_billing_gate,
            floor_required=settings.relay_floor_required,
            max_message_chars=settings.relay_max_message_chars,
        )
        self.lag = LoopLag()
        self.vitals = Vitals(
            jobs=self.jobs.snapshot,
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
        self.loops = Supervisor(
            "ashao-core",
            {
                "reaper": every(Reaper.INTERVAL_S, self.jobs.reaper.tick),
                "treasury": every(self.treasury.interval_s, self.treasury.tick),
                "loop-lag": every(LoopLag.PERIOD_S, self.lag.tick),
                "idempotency-keys": every(3600.0, self.jobs.admission.prune_keys),
            },
        )

    @property
    def address(self) -> str:
        """``host:port`` the server listens on."""
        host = self.settings.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Open the store, load what lives in memory, recover jobs, start the loops, start serving."""
        await self.store.open()
        await self.ledger.load()
        await self.directory.load()
        await self.safety.load()
        await self.jobs.start()
        self.loops.start()
        self._server, self.port = build_server(
            settings=self.settings,
            jobs=self.jobs,
            accounts=self.accounts,
            treasury=self.treasury,
            images=self.images,
            relay=self.relay,
            documents=self.documents,
            signer=self.signer,
            relays=self.relays,
            health=self.health,
        )
        await self.health.serving()
        await self._server.start()
        log.info("core listening on %s (data in %s)", self.address, self.settings.data_dir)

    async def wait(self) -> None:
        """Until shutdown."""
        await self._stopped.wait()

    async def shutdown(self, grace: float = 3.0) -> None:
        """Stop admitting, let calls finish for ``grace`` seconds, drain writes, then close. Idempotent."""
        if self._shutting_down:
            await self._stopped.wait()
            return
        self._shutting_down = True
        try:
            await self.health.shutting_down()  # balancers move away before the server stops taking calls
            self.jobs.stop_admitting()
            if self._server is not None:
                await self._server.stop(grace)
            await self.loops.stop()
            await self.moderator.aclose()
            await self.cascade.aclose()
            await self.jobs.drain()
            await self.store.close()
        finally:
            self._stopped.set()
