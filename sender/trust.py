"""Which certificates the sender trusts: what the user names, else what the machine trusts.

1. The first of `SSL_CERT_FILE`, `SSL_CERT_DIR`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` that is
   set, alone: the variables OpenSSL, requests (Visivo 2.2.1's PostHog client) and curl read,
   where users behind TLS inspection put their company's root CA.
2. Otherwise the operating system's trust store (through `truststore`, as pip does): the
   Keychain on macOS, the Windows certificate store, the system bundle on Linux, which is where
   corporate IT installs its root.
3. A machine that has no store at all (a slim container without `ca-certificates`) falls back
   to certifi's Mozilla bundle, which Visivo 2.2.1 used.

Verification is never turned off. The OS store is read at the first TLS handshake, not here: a
sender that only speaks plain HTTP to a local receiver never loads a certificate.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Mapping

from visivo_telemetry._failures import CA_VARIABLES


class CaBundleError(Exception):
    """A CA variable names something that cannot be loaded; its text is the variable's name."""


def named_bundle(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The first CA variable set in `env`, as (name, path); None when none is."""
    for name in CA_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def ssl_context(env: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying client context per the order above; `CaBundleError` if the named one fails."""
    env = os.environ if env is None else env
    named = named_bundle(env)
    if named is not None:
        name, path = named
        try:
            if os.path.isdir(path):
                return ssl.create_default_context(capath=path)
            return ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise CaBundleError(name) from error
    return _machine_context()


def _machine_context() -> ssl.SSLContext:
    try:
        import truststore
    except ImportError:
        context = ssl.create_default_context()
    else:
        context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not _machine_has_store():
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


def _machine_has_store() -> bool:
    """Whether the OS gives certificates to trust; only an OpenSSL system can lack them."""
    if sys.platform in ("win32", "darwin"):
        return True
    defaults = ssl.get_default_verify_paths()
    return bool(defaults.cafile or defaults.capath) or any(
        os.path.isfile(path)
        for path in (
            "/etc/ssl/cert.pem",  # Alpine, Arch, Fedora, RHEL 9+, BSD
            "/etc/pki/tls/cert.pem",  # older Fedora, RHEL, CentOS
            "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
            "/etc/ssl/ca-bundle.pem",  # SUSE
        )
    )
