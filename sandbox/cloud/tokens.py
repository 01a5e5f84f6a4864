"""The cloud sandbox's token signing key, made at each start: the access tokens it issues (Entra ID and
managed identity), the JWKS that publishes it, and the bearer-token check the resource services use."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .credentials import b64url


class TokenIssuer:
    def __init__(self) -> None:
        self._key: rsa.RSAPrivateKey | None = None
        self._kid = ""

    def new_key(self) -> None:
        """A fresh RS256 key: tokens signed before no longer verify."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._key, self._kid = key, b64url(hashlib.sha1(public_der).digest())  # kid like Entra's

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        assert self._key is not None
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        key = jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {"keys": [{**key, "kid": self._kid, "x5t": self._kid, "use": "sig", "alg": "RS256"}]}

    def access_token(
        self,
        tenant_id: str,
        object_id: str,
        audience: str,
        app_id: str,
        lifetime: int,
        *,
        issuer: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed access token and its expiry (epoch seconds)."""
        if self._key is None:
            raise RuntimeError("the sandbox has not been started")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer or f"https://sts.windows.net/{tenant_id}/",
            "iat": now - 300,  # Entra back-dates iat/nbf by five minutes for clock skew
            "nbf": now - 300,
            "exp": now + lifetime,
            "appid": app_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "idtyp": "app",
            "oid": object_id,
            "sub": object_id,
            "tid": tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
            **(extra or {}),
        }
        # `kid` only, like Entra's v2 tokens: an x5t header is what marks a certificate assertion.
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        return token, now + lifetime

    def bearer(self, authorization: str) -> tuple[dict[str, Any] | None, str | None]:
        """(claims, problem): problem is None for a good sandbox token, else missing/invalid/expired."""
        if not authorization:
            return None, "missing"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or self._key is None:
            return None, "invalid"
        try:
            claims = jwt.decode(
                token.strip(),
                self._key.public_key(),
                algorithms=["RS256"],
                options={
                    "verify_exp": False,  # checked below, to say so
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "require": ["aud", "exp", "tid", "oid"],
                },
            )
        except jwt.PyJWTError:
            return None, "invalid"
        if float(claims["exp"]) <= time.time():
            return claims, "expired"
        return claims, None
