"""A deliberately misbehaving OpenID provider, for the ID token checks.

A real provider never issues an ID token with the wrong nonce, issuer or
audience, or one that has expired, so these tests craft such tokens
themselves, signed with this test's own RSA key, and serve them from a small
provider of their own on 127.0.0.1: discovery, JWKS and a token endpoint
(which does check the PKCE verifier against the challenge the portal sent).
Everything else about the flow is the portal's real code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class MisbehavingProvider:
    """Serves metadata and keys, and answers the token request with ``self.id_token()``."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.client_id = "portal-client"
        self.client_secret = "portal-secret"  # noqa: S105
        self.claims: Callable[[dict[str, Any]], dict[str, Any]] = lambda base: base
        self.sign_with: RSAKey | None = None
        self.challenge: str | None = None
        self.nonce: str | None = None
        self.token_requests = 0
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(5)
        self.server.server_close()

    def remember_authorisation(self, query: dict[str, str]) -> None:
        """Keep the nonce and PKCE challenge the portal sent (as the authorise step would)."""
        self.nonce = query["nonce"]
        self.challenge = query["code_challenge"]

    def good_claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": "subject-1",
            "email": "ada@acme.example",
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
        }

    def id_token(self) -> str:
        claims = self.claims(self.good_claims())
        key = self.sign_with or self.key
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, key)

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.path == "/.well-known/openid-configuration":
            return self._json(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": self.issuer + "/authorize",
                    "token_endpoint": self.issuer + "/token",
                    "jwks_uri": self.issuer + "/jwks",
                    "response_types_supported": ["code"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                }
            )
        if request.path == "/jwks":
            return self._json({"keys": [self.key.as_dict(private=False)]})
        if request.path == "/token" and request.method == "POST":
            self.token_requests += 1
            auth = request.authorization
            if auth is None or (auth.username, auth.password) != (
                self.client_id,
                self.client_secret,
            ):
                return self._json({"error": "invalid_client"}, 401)
            verifier = request.form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != self.challenge:
                return self._json({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            return self._json(
                {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token()}
            )
        return Response("not found", status=404)

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")
