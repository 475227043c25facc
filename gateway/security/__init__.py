"""Security building blocks: who calls (identity), what they may do (authz), mTLS (tls, pki).

A call is admitted in three steps, all in the server's interceptor or handler:

1. `identity_from_auth_context(context.auth_context())` — the verified certificate's identity,
   or on the edge proxy's connection the certificate it forwards (`forwarded`);
2. `DenyList.check(identity)` — not revoked, not expired;
3. `authorize(identity, action)` — the policy; `to_error(decision)` for a refusal.
"""

from gateway.security.authz import (
    ALLOW,
    RPC_ACTIONS,
    Action,
    Admin,
    Decision,
    Denial,
    ListApplications,
    PublishCatalogVersion,
    PublishRegionCatalog,
    ReadApplication,
    ReadCatalog,
    ReportStatus,
    SubmitApplication,
    VerifyLicense,
    authorize,
    require,
    to_error,
)
from gateway.security.identity import Identity, Role, identity_from_auth_context
from gateway.security.pki import CertKeyPair, PkiLayout, generate_dev_pki
from gateway.security.tls import (
    CertificateReloader,
    DenyList,
    ServerTlsFiles,
    channel_credentials,
    server_credentials,
)

__all__ = [
    "ALLOW",
    "RPC_ACTIONS",
    "Action",
    "Admin",
    "CertKeyPair",
    "CertificateReloader",
    "Decision",
    "Denial",
    "DenyList",
    "Identity",
    "ListApplications",
    "PkiLayout",
    "PublishCatalogVersion",
    "PublishRegionCatalog",
    "ReadApplication",
    "ReadCatalog",
    "ReportStatus",
    "Role",
    "ServerTlsFiles",
    "SubmitApplication",
    "VerifyLicense",
    "authorize",
    "channel_credentials",
    "generate_dev_pki",
    "identity_from_auth_context",
    "require",
    "server_credentials",
    "to_error",
]
