"""Kubernetes credentials, loaded once from the settings and shared by kopf and our own calls,
and the one request timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

# (connect, read) seconds for every API call of our own: a hung connection must fail, be logged
# and retried, never block a part of a program for good. The only bound there is: a watch and a
# Lease request derive theirs from it (see list_watch and leader), nothing else has another.
REQUEST_TIMEOUT: Final = (5.0, 30.0)


def load_configuration(kubeconfig: Path | None) -> client.Configuration:
    """A kubeconfig file when given, else the pod's service account (in-cluster)."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
    else:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return configuration


def api_client(configuration: client.Configuration) -> client.ApiClient:
    return client.ApiClient(configuration)


def kopf_connection(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials, in the form kopf's own HTTP client wants."""
    token: Any = configuration.api_key.get("authorization") or configuration.api_key.get(
        "BearerToken"
    )
    scheme = None
    if isinstance(token, str) and " " in token:
        scheme, token = token.split(" ", 1)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme,
        token=token,
        default_namespace=None,
        priority=100,
    )


def api_unavailable(exc: BaseException) -> bool:
    """The API server could not be reached or answered that it cannot serve now: waiting and
    retrying is the cure, not restarting the agent.

    Only the official client's errors (urllib3) are classified: every supervised part calls the
    API through it. kopf's aiohttp errors never reach a supervisor (kopf retries its own watches),
    so aiohttp, which only kopf brings along, is not imported here."""
    if isinstance(exc, ApiException):
        return exc.status in (0, None, 429) or exc.status >= 500
    return isinstance(exc, ConnectionError | TimeoutError | HTTPError)
