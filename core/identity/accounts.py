"""Account operations that touch identity and money together: sign-in with its sign-up grant, and
the operator's grants. Each is written in one unit, and memory learns of it only once it committed."""

from __future__ import annotations

from core import economics
from core.errors import InvalidArgumentError
from core.identity.directory import Directory, User
from core.identity.wallet import WalletSignIn
from core.money.ledger import MINT, NOTHING, Ledger, Move, user_account
from core.store import Statement, Store

MAX_GRANT = 10**12
"""Most credits one grant mints."""


class AccountService:
    """Sign-in, sign-out and credits."""

    def __init__(self, *, store: Store, directory: Directory, wallets: WalletSignIn, ledger: Ledger) -> None:
        self._store = store
        self.directory = directory
        self.wallets = wallets
        self._ledger = ledger

    async def sign_in(self, address: str, message: str, signature: str) -> tuple[User, str, float]:
        """Check the signed message; create the user (with the sign-up grant) if new; open a session.

        Returns (user, session token, expires_at). Nothing is remembered unless all of it committed.
        """
        self.wallets.check_signed(address, message, signature)
        user = await self.directory.lookup_address(address)
        rows: list[Statement] = []
        booking = NOTHING
        new_user = user is None
        if user is None:
            user, rows = self.directory.plan_user(address)
            grant = Move(MINT, user_account(user.id), economics.SIGNUP_GRANT, "signup_grant", user.id)
            booking = self._ledger.book([grant])
        session = self.directory.plan_session(user.id)
        try:
            await self._store.write(rows + booking.statements + session.rows)
        except BaseException:
            self._ledger.undo(booking)
            raise
        if new_user:
            self.directory.created(user)
        self.directory.opened(session)
        return user, session.token, session.expires_at

    async def sign_out(self, token: str) -> None:
        """End a session (a no-op without one)."""
        if token.startswith("sess_"):
            await self.directory.close_session(token)

    async def credits(self, user_id: str) -> int:
        """Spendable credits."""
        return await self._ledger.balance(user_account(user_id))

    async def grant(self, user: str, amount: int, memo: str) -> tuple[str, int]:
        """Mint ``amount`` credits to a user; (user id, new balance)."""
        if not 0 < amount <= MAX_GRANT:
            raise InvalidArgumentError(f"amount: must be between 1 and {MAX_GRANT}", field="amount")
        uid = (await self.directory.find(user)).id

        await self._ledger.commit([Move(MINT, user_account(uid), amount, "grant", memo[:200])])
        return uid, await self.credits(uid)
