"""JSON over HTTP to the apiserver through the Kubernetes client's own connection pool (its TLS, client
certificates, proxy and bearer token, refreshed by its hook), without its generated layer.

The generated client validates every call's arguments with pydantic, builds model objects for typed
bodies, and the dynamic client wraps each answer in ResourceInstance objects before `to_dict()` turns them
back into what the apiserver sent. For the operator's writes and reads that layer was a large share of its
CPU per new run (py-spy), so the operator speaks the REST paths itself: plain dicts in, plain dicts out.
Errors stay the client's `ApiException` (status, reason, body), which `core.rejection` parses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # a JSON body is YAML: server-side apply accepts it
USER_AGENT = "reasoning-operator"

Query = Mapping[str, str | int | bool | None]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: its group/version prefix and plural (namespaced kinds only)."""

    api_version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        where = f"/namespaces/{quote(namespace, safe='')}" if namespace is not None else ""
        tail = f"/{quote(name, safe='')}" if name is not None else ""
        return f"{prefix}{where}/{self.plural}{tail}" + (f"/{sub}" if sub else "")


class Rest:
    """Requests on one ApiClient's pool. Thread-safe as urllib3's PoolManager is."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.configuration = api.configuration
        self.host = str(self.configuration.host).rstrip("/")
        self.pool: urllib3.PoolManager = api.rest_client.pool_manager

    def _headers(self, content_type: str | None, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if content_type is not None:
            headers["Content-Type"] = content_type
        # auth_settings() reads the token through get_api_key_with_prefix, which runs the refresh hook (an
        # in-cluster projected token is re-read when it rotates; an exec plugin's is renewed).
        bearer = self.configuration.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            headers["authorization"] = str(bearer["value"])
        return headers

    def _url(self, path: str, query: Query | None) -> str:
        if not query:
            return self.host + path
        pairs = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items() if v is not None}
        return f"{self.host}{path}?{urlencode(pairs)}" if pairs else self.host + path

    def raw(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One request; an error status raises ApiException. `stream`: the body is left unread (watches)."""
        data = None if body is None else orjson.dumps(body)
        response = self.pool.request(
            method,
            self._url(path, query),
            body=data,
            headers=self._headers(content_type if data is not None else None, accept),
            timeout=_timeout(timeout),
            preload_content=not stream,
        )  # the pool's own retries, as the client's: a pooled connection the apiserver dropped is opened again
        if response.status >= 400:
            text = (response.data if not stream else response.read()).decode("utf-8", errors="replace")
            if stream:
                response.release_conn()
            raise ApiException(status=response.status, reason=response.reason, body=text)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON (None for an empty body)."""
        data = self.raw(method, path, **kwargs).data
        return orjson.loads(data) if data else None

    def text(self, path: str, *, query: Query | None = None, timeout: float | None = None) -> str:
        return str(self.raw("GET", path, query=query, accept="*/*", timeout=timeout).data.decode("utf-8", "replace"))


def _timeout(value: float | tuple[float, float] | None) -> urllib3.Timeout | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return urllib3.Timeout(connect=value[0], read=value[1])
    return urllib3.Timeout(total=value)


#: Where each kind the operator reads or writes lives: the one table (kube.py's requests, cache.py's informers).
RESOURCES: dict[str, Resource] = {
    "ConfigMap": Resource("v1", "configmaps"),
    "PersistentVolumeClaim": Resource("v1", "persistentvolumeclaims"),
    "Service": Resource("v1", "services"),
    "Pod": Resource("v1", "pods"),
    "Job": Resource("batch/v1", "jobs"),
    "Deployment": Resource("apps/v1", "deployments"),
    "Event": Resource("v1", "events"),
}
