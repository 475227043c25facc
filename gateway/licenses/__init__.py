"""Electronic licences (电子证照): the token profile, the trust list, key and status-list
caches, the verifier and the LicenseService servicer.

    token.py        the profile: pre-parse checks, header/claims model, the signature check
    trust.py        which provinces are trusted for which licence types, and the bounds
    keys.py         provinces' JWKS, cached with a refresh rate limit
    status_list.py  provinces' signed status lists (IETF Token Status List)
    verifier.py     the order of checks, ending in a Verdict; the authenticated-token cache
    service.py      gateway.api.v1.LicenseService
"""
