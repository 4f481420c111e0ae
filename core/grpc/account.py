"""AccountService: sign-in, sessions, API keys, credits."""

from __future__ import annotations

from ashao.v1 import account_pb2, account_pb2_grpc
from core.grpc.context import Callers, Ctx, bearer
from core.identity.accounts import AccountService
from core.identity.principal import Principal, require_operator, require_user


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    """Sign-in, sessions, API keys, credits."""

    def __init__(self, *, service: AccountService, callers: Callers) -> None:
        self._s = service
        self._directory = service.directory
        self._callers = callers

    async def _principal(self, context: Ctx) -> Principal:
        return await self._directory.resolve(bearer(context), self._callers.ip(context))

    async def _user(self, context: Ctx) -> str:
        return require_user(await self._principal(context))

    async def GetSignInMessage(
        self, request: account_pb2.GetSignInMessageRequest, context: Ctx
    ) -> account_pb2.GetSignInMessageResponse:
        """The exact message to sign."""
        message, nonce, expires = self._s.wallets.challenge(request.address)
        return account_pb2.GetSignInMessageResponse(
            message=message, nonce=nonce, expires_at_ms=int(expires * 1000)
        )

    async def SignIn(self, request: account_pb2.SignInRequest, context: Ctx) -> account_pb2.SignInResponse:
        """Verify the signed message and open a session."""
        user, token, expires = await self._s.sign_in(request.address, request.message, request.signature)
        return account_pb2.SignInResponse(
            user=user.to_proto(), session_token=token, expires_at_ms=int(expires * 1000)
        )

    async def SignOut(self, request: account_pb2.SignOutRequest, context: Ctx) -> account_pb2.SignOutResponse:
        """End the caller's session."""
        await self._s.sign_out(bearer(context))
        return account_pb2.SignOutResponse()

    async def WhoAmI(self, request: account_pb2.WhoAmIRequest, context: Ctx) -> account_pb2.WhoAmIResponse:
        """The signed-in user."""
        user = await self._directory.find(await self._user(context))

        return account_pb2.WhoAmIResponse(user=user.to_proto(), credits=await self._s.credits(user.id))

    async def CreateApiKey(
        self, request: account_pb2.CreateApiKeyRequest, context: Ctx
    ) -> account_pb2.CreateApiKeyResponse:
        """A new API key for the signed-in user."""
        key_id, secret, created = await self._directory.create_api_key(
            await self._user(context), request.name
        )
        return account_pb2.CreateApiKeyResponse(
            key=account_pb2.ApiKey(id=key_id, name=request.name, created_at_ms=created), secret=secret
        )

    async def ListApiKeys(
        self, request: account_pb2.ListApiKeysRequest, context: Ctx
    ) -> account_pb2.ListApiKeysResponse:
        """The caller's keys."""
        keys = await self._directory.list_api_keys(await self._user(context))
        return account_pb2.ListApiKeysResponse(
            keys=[account_pb2.ApiKey(id=k, name=n, created_at_ms=c, revoked_at_ms=r) for k, n, c, r in keys]
        )

    async def RevokeApiKey(
        self, request: account_pb2.RevokeApiKeyRequest, context: Ctx
    ) -> account_pb2.RevokeApiKeyResponse:
        """Revoke one of the caller's keys."""
        await self._directory.revoke_api_key(await self._user(context), request.key_id)
        return account_pb2.RevokeApiKeyResponse()

    async def GetCredits(
        self, request: account_pb2.GetCreditsRequest, context: Ctx
    ) -> account_pb2.GetCreditsResponse:
        """The caller's credits."""
        return account_pb2.GetCreditsResponse(credits=await self._s.credits(await self._user(context)))

    async def GrantCredits(
        self, request: account_pb2.GrantCreditsRequest, context: Ctx
    ) -> account_pb2.GrantCreditsResponse:
        """Operator only: mint credits to a user."""
        require_operator(await self._principal(context))
        uid, balance = await self._s.grant(request.user, request.amount, request.memo)
        return account_pb2.GrantCreditsResponse(credits=balance, user_id=uid)
