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

from ashao_common.metrics import MetricsServer
from ashao_common.supervise import Supervisor, every
from ashao_common.tracing import Tracer
from core.cluster.limits import SharedRateLimiter
from core.cluster.node import Node
from core.cluster.secrets import adopt_all
from core.config import CoreSettings
from core.economics import TIERS
from core.grpc.context import PEER_HEADER
from core.grpc.health import Health
from core.grpc.server import build_server
from core.grpc.status import ErrorCounts
from core.identity.accounts import AccountService
from core.identity.directory import Directory
from core.identity.ratelimit import Limiter, RateLimiter
from core.identity.relays import RELAY_KEY_FILE, RELAY_KEY_HEADER, RelayKeys
from core.identity.wallet import SignInSettings, WalletSignIn
from core.images.service import ImageService
from core.jobs.system import JobSystem
from core.metrics import CoreCollector, core_registry
from core.money.balances import SharedBalances
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
from core.store import Store
from core.store.images import ImageBytes, ImageFiles, ImageRows
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore

log = logging.getLogger("ashao.core")


class CoreApp:
    """The running core. ``start()``, then ``wait()`` or ``shutdown()``."""

    def __init__(self, settings: CoreSettings, *, tracer: Tracer | None = None) -> None:
        """``tracer``: the process's tracer while tracing is on (``ashao_common.tracing.configure``)."""
        self.settings = settings
        self.tracer = tracer
        self._server: grpc.aio.Server | None = None
        self.health = Health()
        """What the standard health service reports: SERVING while serving, NOT_SERVING from shutdown."""
        self.port = 0
        self._stopped = asyncio.Event()
        self._shutting_down = False
        self.store: Store = (
            PostgresStore(
                settings.store, pool_size=settings.store_pool_size, max_batch=settings.commit_max_batch
            )
            if settings.store
            else SqliteStore(
                settings.data_dir / "ashao.db",
                synchronous=settings.db_synchronous,
                max_batch=settings.commit_max_batch,
            )
        )
        shared_store = bool(settings.store)
        self.node = (
            Node(
                url=settings.bus,
                store=self.store,
                address=settings.peer_address,
                peer_metadata=(),
                cluster=settings.cluster_name,
                ack_wait_s=settings.cluster_ack_wait_s,
            )
            if settings.bus
            else None
        )
        self.ledger = Ledger(self.store, SharedBalances(self.store) if shared_store else None)
        self.directory = Directory(
            store=self.store,
            data_dir=settings.data_dir,
            session_ttl_s=settings.session_ttl_s,
            revalidate_s=5.0 if self.node is not None else None,
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
        self.send_limiter = self._limiter(
            "send",
            per_principal=(settings.send_rate_per_ip, settings.send_burst_per_ip),
            per_ip=(settings.send_rate_per_ip, settings.send_burst_per_ip),
        )
        self.image_files: ImageBytes = (
            ImageRows(self.store) if shared_store else ImageFiles(settings.data_dir / "images")
        )
        self.jobs = JobSystem(
            settings=settings,
            store=self.store,
            ledger=self.ledger,
            images=self.image_files,
            node=self.node,
            send_limiter=self.send_limiter,
            tracer=tracer,
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
        self.limiter = self._limiter(
            "relay",
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
            flush_s=settings.flush_interval_ms / 1000,
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
        self.errors = ErrorCounts()
        self.registry = core_registry(
            CoreCollector(
                jobs=self.jobs, store=self.store, cascade=self.cascade, errors=self.errors, lag=self.lag
            )
        )
        """The core's Prometheus metrics (served at ``metrics_addr`` when it is set)."""
        self.metrics = MetricsServer(self.registry, settings.metrics_addr) if settings.metrics_addr else None
        self.documents = RelayDocuments(
            relay=self.relay, vitals=self.vitals, endpoint=settings.relay_endpoint
        )
        self.loops = Supervisor(
            "ashao-core",
            {
                **self.jobs.loops(),
                "treasury": every(self.treasury.interval_s, self._treasury_tick),
                "loop-lag": every(LoopLag.PERIOD_S, self.lag.tick),
                "idempotency-keys": every(3600.0, self.jobs.admission.prune_keys),
            },
        )

    def _limiter(
        self,
        name: str,
        *,
        per_principal: tuple[float, float],
        per_ip: tuple[float, float],
        daily_quota: int = 0,
    ) -> Limiter:
        """Rate limits shared by every core through Redis if ``limits`` is set, else this process's."""
        if self.settings.limits:
            return SharedRateLimiter.connect(
                self.settings.limits,
                name=f"{self.settings.cluster_name}:{name}",
                per_principal=per_principal,
                per_ip=per_ip,
                daily_quota=daily_quota,
            )
        return RateLimiter(per_principal=per_principal, per_ip=per_ip, daily_quota=daily_quota)

    async def _treasury_tick(self) -> None:
        """A treasury snapshot (and the staking rewards): among several cores, the oldest live one takes
        it (the store also refuses a second reward for the same interval)."""
        if self.node is None or await self.node.leading():
            await self.treasury.tick()

    async def _adopt_keys(self) -> None:
        """Hold the keys every core of the cluster holds (the first core's)."""
        data_dir = self.settings.data_dir
        self.directory.load_operator_token()  # (created here on a first start, to be proposed)
        if await adopt_all(self.store, data_dir):
            self.signer.reload(data_dir)
            self.directory.load_operator_token()
            self.relays = RelayKeys.load(data_dir, self.settings.relay_keys)

    async def _join_cluster(self) -> None:
        """Present the cluster's relay key to other cores, and take this core's place."""
        assert self.node is not None
        key = (self.settings.data_dir / RELAY_KEY_FILE).read_text().strip()
        self.node.remote.metadata = ((PEER_HEADER, "1"), (RELAY_KEY_HEADER, key))
        if self.settings.tls_cert_file is not None:
            ca = self.settings.peer_tls_ca_file
            self.node.remote.credentials = grpc.ssl_channel_credentials(ca.read_bytes() if ca else None)
        if not self.settings.advertise_addr:
            host = self.settings.grpc_addr.rsplit(":", 1)[0]
            if host in ("", "0.0.0.0", "[::]", "::"):
                raise ValueError(
                    "advertise_addr: the core listens on a wildcard address; say where other cores reach it"
                )
            self.node.address = self.address
        await self.node.open()

    @property
    def address(self) -> str:
        """``host:port`` the server listens on."""
        host = self.settings.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def metrics_address(self) -> str:
        """``host:port`` the metrics listener serves ``/metrics`` on ('' when it is off)."""
        if self.metrics is None:
            return ""
        return f"{self.settings.metrics_addr.rsplit(':', 1)[0]}:{self.metrics.port}"

    async def start(self) -> None:
        """Open the store, load what lives in memory, recover jobs, start the loops, start serving."""
        await self.store.open()
        if self.node is not None:
            await self._adopt_keys()
        await self.ledger.load()
        await self.directory.load()
        await self.safety.load()
        await self.jobs.start()
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
            errors=self.errors,
            tracer=self.tracer,
            health=self.health,
        )
        if self.node is not None:
            await self._join_cluster()
        self.loops.start()
        await self.health.serving()
        await self._server.start()
        if self.node is not None:
            log.info(
                "core %s listening on %s, in the cluster on %s", self.node.id, self.address, self.settings.bus
            )
        else:
            log.info("core listening on %s (data in %s)", self.address, self.settings.data_dir)
        if self.metrics is not None:
            await self.metrics.start()
            log.info("metrics at http://%s/metrics", self.metrics_address)

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
            if self.metrics is not None:
                await self.metrics.close()
            await self.loops.stop()
            if self.node is not None:
                await self.node.close()
            for limiter in (self.limiter, self.send_limiter):
                if isinstance(limiter, SharedRateLimiter):
                    await limiter.aclose()
            await self.moderator.aclose()
            await self.cascade.aclose()
            await self.jobs.drain()
            await self.store.close()
        finally:
            self._stopped.set()
