"""The gateway to OpenID Connect providers: the only module that talks to them.

One sign-in is two calls:

* :func:`begin` discovers the provider (``/.well-known/openid-configuration``),
  draws a ``state``, a ``nonce`` and a PKCE verifier (S256), and returns the
  authorisation URL plus the :class:`Pending` record the caller keeps in the
  browser's session until the provider sends the person back;
* :func:`finish` takes the callback's query, exchanges the code (with the PKCE
  verifier and the client secret) and verifies the ID token against the
  provider's published keys: signature, issuer, audience, expiry (with a clock
  skew allowance), issued-at and nonce.

authlib builds the authorisation URL and makes the token request; joserfc
(authlib's own JOSE library) checks signatures. Each failure raises
:class:`SsoFailed` with a ``stage`` (discovery, authorisation, client
authentication, token, ID token, claims) and a message a person can act on,
so a sign-in page and the "test connection" report say exactly what went wrong.
Nothing here touches the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l

# Asymmetric algorithms only: "none" and HMAC (keyed with the client secret) are refused.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_SCOPES = "openid email profile"
HTTP_TIMEOUT = 5.0  # seconds for each call to a provider
METADATA_TTL = 600.0  # seconds a provider's metadata and keys are reused
PENDING_TTL = 600  # seconds a person has to come back from the provider


class SsoFailed(DomainError):
    """A single sign-on step failed. ``stage`` says which; nothing was signed in."""

    status = 400
    code = "sso_failed"
    title = _l("Single sign-on failed")

    def __init__(self, detail: str, *, stage: str, code: str, status: int | None = None) -> None:
        super().__init__(detail, code=code, extra={"stage": stage})
        self.stage = stage
        if status is not None:
            self.status = status


@dataclass(frozen=True)
class ProviderSettings:
    """What the gateway needs to know of one provider connection."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: str = DEFAULT_SCOPES
    clock_skew: int = 60


@dataclass
class Pending:
    """A sign-in sent to the provider and not yet back (kept in the browser's session)."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    issuer: str
    created: float = field(default_factory=time.time)
    # What the caller wants to remember (purpose, organisation, where to go next).
    context: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pending:
        return cls(**data)

    @property
    def expired(self) -> bool:
        return time.time() - self.created > PENDING_TTL


# ---------------------------------------------------------------- metadata and keys

_cache: dict[str, tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def clear_caches() -> None:
    """Forget every provider's cached metadata and keys (tests, key rotation)."""
    with _cache_lock:
        _cache.clear()


def _cached(key: str) -> Any | None:
    with _cache_lock:
        hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < METADATA_TTL:
        return hit[1]
    return None


def _remember(key: str, value: Any) -> None:
    with _cache_lock:
        _cache[key] = (time.monotonic(), value)


def normalise_issuer(issuer: str) -> str:
    """The issuer as it is compared: no trailing slash."""
    return (issuer or "").strip().rstrip("/")


def _get_json(url: str, *, stage: str, what: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        host = urlsplit(url).netloc or url
        raise SsoFailed(
            _l(
                "The identity provider at %(host)s could not be reached (%(name)s). It "
                "may be down; try again in a few minutes, or ask your IT team.",
                host=host,
                name=type(exc).__name__,
            ),
            stage=stage,
            code="provider_unreachable",
            status=502,
        ) from exc
    if response.status_code != 200:
        raise SsoFailed(
            _l(
                "The identity provider answered %(status_code)s for its %(what)s (%(url)s).",
                status_code=response.status_code,
                what=what,
                url=url,
            ),
            stage=stage,
            code="provider_error",
            status=502,
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise SsoFailed(
            _l("The identity provider's %(what)s at %(url)s is not JSON.", what=what, url=url),
            stage=stage,
            code="provider_error",
            status=502,
        ) from exc
    if not isinstance(data, dict):
        raise SsoFailed(
            _l("The identity provider's %(what)s is not a JSON object.", what=what),
            stage=stage,
            code="provider_error",
            status=502,
        )
    return data


def discover(issuer: str) -> dict[str, Any]:
    """The provider's OpenID metadata, checked: its ``issuer`` must be the one configured."""
    issuer = normalise_issuer(issuer)
    cached = _cached("meta:" + issuer)
    if cached is not None:
        return cached
    metadata = _get_json(
        issuer + "/.well-known/openid-configuration", stage="discovery", what="OpenID metadata"
    )
    if normalise_issuer(metadata.get("issuer", "")) != issuer:
        raise SsoFailed(
            _l(
                "The metadata names issuer “%(get)s”, not “%(issuer)s”. Check the "
                "issuer URL in the SSO settings.",
                get=metadata.get("issuer"),
                issuer=issuer,
            ),
            stage="discovery",
            code="issuer_mismatch",
            status=502,
        )
    missing = [
        key
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not metadata.get(key)
    ]
    if missing:
        raise SsoFailed(
            _l("The provider's metadata lacks %(join)s.", join=", ".join(missing)),
            stage="discovery",
            code="metadata_incomplete",
            status=502,
        )
    methods = metadata.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise SsoFailed(
            _l("The provider does not support PKCE with S256, which the portal requires."),
            stage="discovery",
            code="pkce_unsupported",
            status=502,
        )
    _remember("meta:" + issuer, metadata)
    return metadata


def _keys(jwks_uri: str, *, refresh: bool = False) -> KeySet:
    if not refresh:
        cached = _cached("jwks:" + jwks_uri)
        if cached is not None:
            return cached
    data = _get_json(jwks_uri, stage="id_token", what="signing keys (JWKS)")
    try:
        keys = KeySet.import_key_set(
            {"keys": [k for k in data.get("keys", []) if k.get("use", "sig") == "sig"]}
        )
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoFailed(
            _l("The provider's signing keys (JWKS) could not be read."),
            stage="id_token",
            code="jwks_invalid",
            status=502,
        ) from exc
    _remember("jwks:" + jwks_uri, keys)
    return keys


# ---------------------------------------------------------------- the flow


def _client(settings: ProviderSettings, metadata: dict[str, Any], **kwargs: Any) -> OAuth2Session:
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth_method = (
        "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    )
    return OAuth2Session(
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        token_endpoint_auth_method=auth_method,
        scope=settings.scopes,
        redirect_uri=settings.redirect_uri,
        code_challenge_method="S256",
        default_timeout=HTTP_TIMEOUT,
        **kwargs,
    )


def begin(
    settings: ProviderSettings,
    *,
    login_hint: str | None = None,
    prompt: str | None = None,
    context: dict | None = None,
) -> tuple[str, Pending]:
    """The provider's authorisation URL for a new sign-in, and what to keep until it returns.

    ``prompt="login"`` makes the provider ask for credentials even when the
    person is signed in there already (the "test connection" run uses it).
    """
    metadata = discover(settings.issuer)
    pending = Pending(
        state=generate_token(43),
        nonce=generate_token(43),
        code_verifier=generate_token(64),
        redirect_uri=settings.redirect_uri,
        issuer=normalise_issuer(settings.issuer),
        context=dict(context or {}),
    )
    extra: dict[str, str] = {"nonce": pending.nonce}
    if login_hint:
        extra["login_hint"] = login_hint
    if prompt:
        extra["prompt"] = prompt
    with _client(settings, metadata) as client:
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"],
            state=pending.state,
            code_verifier=pending.code_verifier,
            **extra,
        )
    return url, pending


def finish(settings: ProviderSettings, pending: Pending, query: dict[str, str]) -> dict[str, Any]:
    """The verified ID token claims for a callback whose ``state`` matched ``pending``.

    The caller has already looked ``pending`` up by the callback's ``state`` (a
    missing or unknown state never reaches here).
    """
    if pending.expired:
        raise SsoFailed(
            _l("The sign-in took too long. Start again."), stage="authorisation", code="sso_expired"
        )
    if normalise_issuer(settings.issuer) != pending.issuer or (
        settings.redirect_uri != pending.redirect_uri
    ):
        raise SsoFailed(
            _l("This sign-in was started for another provider. Start again."),
            stage="authorisation",
            code="sso_mixup",
        )
    if query.get("error"):
        description = (query.get("error_description") or query["error"])[:300]
        raise SsoFailed(
            _l(
                "Your identity provider did not sign you in: %(description)s.",
                description=description,
            ),
            stage="authorisation",
            code="provider_refused",
        )
    metadata = discover(settings.issuer)
    # RFC 9207: a provider that names itself in the response must name the right one.
    returned_iss = query.get("iss")
    if returned_iss is not None and normalise_issuer(returned_iss) != pending.issuer:
        raise SsoFailed(
            _l("The response came from another identity provider than the one asked."),
            stage="authorisation",
            code="sso_mixup",
        )
    code = query.get("code")
    if not code:
        raise SsoFailed(
            _l("The identity provider sent no authorisation code."),
            stage="authorisation",
            code="code_missing",
        )
    token = _exchange(settings, metadata, pending, code)
    id_token = token.get("id_token")
    if not id_token:
        raise SsoFailed(
            _l("The identity provider returned no ID token. Is the “openid” scope allowed?"),
            stage="token",
            code="id_token_missing",
        )
    claims = verify_id_token(
        id_token,
        metadata=metadata,
        client_id=settings.client_id,
        nonce=pending.nonce,
        clock_skew=settings.clock_skew,
    )
    if not claims.get("email") and metadata.get("userinfo_endpoint") and token.get("access_token"):
        claims = {**_userinfo(metadata, token["access_token"], claims["sub"]), **claims}
    return claims


def _exchange(
    settings: ProviderSettings, metadata: dict[str, Any], pending: Pending, code: str
) -> dict[str, Any]:
    try:
        with _client(settings, metadata) as client:
            return dict(
                client.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=pending.code_verifier,
                    grant_type="authorization_code",
                )
            )
    except OAuthError as exc:
        if exc.error in ("invalid_client", "unauthorized_client"):
            raise SsoFailed(
                _l(
                    "The identity provider refused the portal's client id or secret "
                    "(%(value)s). Check them in the SSO settings.",
                    value=exc.description or exc.error,
                ),
                stage="client_auth",
                code="client_auth_failed",
                status=502,
            ) from exc
        if exc.error == "invalid_grant":
            raise SsoFailed(
                _l(
                    "The identity provider refused the sign-in code: it was already used, "
                    "has expired, or was not issued for this sign-in. Start again."
                ),
                stage="token",
                code="code_rejected",
            ) from exc
        raise SsoFailed(
            _l(
                "The identity provider refused the token request: %(error)s (%(description)s).",
                error=exc.error,
                description=exc.description,
            )
            if exc.description
            else _l("The identity provider refused the token request: %(error)s.", error=exc.error),
            stage="token",
            code="token_error",
            status=502,
        ) from exc
    except requests.RequestException as exc:
        raise SsoFailed(
            _l("The identity provider could not be reached to finish the sign-in."),
            stage="token",
            code="provider_unreachable",
            status=502,
        ) from exc
    except ValueError as exc:  # a token response that is not JSON
        raise SsoFailed(
            _l("The identity provider's token response could not be read."),
            stage="token",
            code="token_error",
            status=502,
        ) from exc


def _userinfo(metadata: dict[str, Any], access_token: str, sub: str) -> dict[str, Any]:
    try:
        response = requests.get(
            metadata["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        data = response.json() if response.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        data = {}
    # The UserInfo response is only about this person if its sub matches (OIDC Core 5.3.2).
    if not isinstance(data, dict) or data.get("sub") != sub:
        return {}
    return {k: v for k, v in data.items() if k in ("email", "email_verified", "name", "groups")}


def verify_id_token(
    id_token: str,
    *,
    metadata: dict[str, Any],
    client_id: str,
    nonce: str,
    clock_skew: int = 60,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of an ID token after checking everything OpenID Connect Core 3.1.3.7 asks."""
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in offered if a in SIGNING_ALGORITHMS]
    if not algorithms:
        raise SsoFailed(
            _l(
                "The provider signs ID tokens only with algorithms the portal does not "
                "accept (%(join)s).",
                join=", ".join(offered),
            ),
            stage="id_token",
            code="id_token_algorithm",
            status=502,
        )
    token = _decode(id_token, metadata["jwks_uri"], algorithms)
    claims = dict(token.claims)
    now = time.time() if now is None else now

    def refuse(message: Any, code: str) -> SsoFailed:
        # Each message says "Nobody was signed in." itself: one sentence set to translate.
        return SsoFailed(message, stage="id_token", code=code)

    if normalise_issuer(str(claims.get("iss", ""))) != normalise_issuer(metadata["issuer"]):
        raise refuse(
            _l(
                "The ID token was issued by “%(issuer)s”, not by your provider. "
                "Nobody was signed in.",
                issuer=claims.get("iss"),
            ),
            "id_token_wrong_issuer",
        )
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise refuse(
            _l("The ID token was not issued to the portal. Nobody was signed in."),
            "id_token_wrong_audience",
        )
    if len(audiences) > 1 and claims.get("azp") not in (None, client_id):
        raise refuse(
            _l("The ID token was issued to another party. Nobody was signed in."),
            "id_token_wrong_audience",
        )
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or now > exp + clock_skew:
        raise refuse(_l("The ID token has expired. Nobody was signed in."), "id_token_expired")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or iat > now + clock_skew:
        raise refuse(
            _l("The ID token is dated in the future. Check the clocks. Nobody was signed in."),
            "id_token_not_yet_valid",
        )
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + clock_skew:
        raise refuse(
            _l("The ID token is not valid yet. Check the clocks. Nobody was signed in."),
            "id_token_not_yet_valid",
        )
    if not nonce or claims.get("nonce") != nonce:
        raise refuse(
            _l(
                "The ID token does not belong to this sign-in (its nonce differs). "
                "Nobody was signed in."
            ),
            "id_token_wrong_nonce",
        )
    if not claims.get("sub"):
        raise refuse(
            _l("The ID token names no subject. Nobody was signed in."), "id_token_no_subject"
        )
    return claims


def _decode(id_token: str, jwks_uri: str, algorithms: list[str]) -> Any:
    for refresh in (False, True):  # once more with fresh keys: the provider may have rotated
        keys = _keys(jwks_uri, refresh=refresh)
        try:
            return jwt.decode(id_token, keys, algorithms=algorithms)
        except (JoseError, ValueError) as exc:
            if refresh:
                raise SsoFailed(
                    _l(
                        "The ID token's signature does not verify with your provider's keys. "
                        "Nobody was signed in."
                    ),
                    stage="id_token",
                    code="id_token_bad_signature",
                ) from exc
    raise AssertionError("unreachable")
