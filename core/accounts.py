"""Account operations that touch both identity and money: sign-in with its sign-up grant, grants."""

from __future__ import annotations

from core import economics
from core.auth import Accounts
from core.errors import InvalidArgumentError
from core.ledger import MINT, Ledger, Move, user_account
from core.store import Store, StoreError, now_ms


class AccountService:
    """Sign-in, sessions, API keys and credits, each written in one unit."""

    MAX_GRANT = 10**12

    def __init__(self, *, store: Store, accounts: Accounts, ledger: Ledger) -> None:
        self._store = store
        self.accounts = accounts
        self._ledger = ledger

    async def sign_in(self, address: str, message: str, signature: str) -> tuple[str, str, float]:
        """Check the signed message; create the user (with the sign-up grant) if new; open a session."""
        self.accounts.check_signed(address, message, signature)
        uid, created, rows = self.accounts.user_for(address)
        moves = (
            [Move(MINT, user_account(uid), economics.SIGNUP_GRANT, "signup_grant", uid)] if created else []
        )
        rows += self._ledger.moves(moves)
        token, expires, session_rows = self.accounts.open_session(uid)
        try:
            await self._store.write(rows + session_rows)
        except StoreError:
            self._ledger.revert(moves)
            raise
        return uid, token, expires

    async def sign_out(self, token: str) -> None:
        """End a session (a no-op without one)."""
        if token.startswith("sess_"):
            await self._store.write(self.accounts.close_session(token))

    def credits(self, user_id: str) -> int:
        """Spendable credits."""
        return self._ledger.balance(user_account(user_id))

    async def create_api_key(self, user_id: str, name: str) -> tuple[str, str, int]:
        """(key id, secret, created_at_ms)."""
        key_id, secret, rows = self.accounts.new_api_key(user_id, name)
        await self._store.write(rows)
        return key_id, secret, now_ms()

    async def list_api_keys(self, user_id: str) -> list[tuple[str, str, int, int]]:
        """(id, name, created, revoked) of the user's keys, newest first."""
        rows = await self._store.fetchall(
            "SELECT id, name, created_at, revoked_at FROM api_keys WHERE user_id = ? ORDER BY created_at DESC",
            (user_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def grant(self, user: str, amount: int, memo: str) -> tuple[str, int]:
        """Mint ``amount`` credits to a user; (user id, new balance)."""
        if not 0 < amount <= self.MAX_GRANT:
            raise InvalidArgumentError(f"amount: must be between 1 and {self.MAX_GRANT}", field="amount")
        uid = self.accounts.find_user(user)
        moves = [Move(MINT, user_account(uid), amount, "grant", memo[:200])]
        rows = self._ledger.moves(moves)
        try:
            await self._store.write(rows)
        except StoreError:
            self._ledger.revert(moves)
            raise
        return uid, self.credits(uid)
