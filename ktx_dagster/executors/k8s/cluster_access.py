"""Cluster access checked before any Job is created: the kubeconfig, its context, its server."""

from __future__ import annotations

import os
from collections.abc import Mapping


class ClusterAccessError(RuntimeError):
    """The Kubernetes API cannot be reached from where the steps are launched."""



_ACCESS_FIX = ("Fix: point KUBECONFIG (or KTX_KUBECONFIG) at the kubeconfig of a cluster that is up "
               "(`minikube start` and `aws eks update-kubeconfig` write ~/.kube/config), choose its context "
               "with KTX_KUBE_CONTEXT, or run locally with KTX_DEPLOYMENT=local.")



def kubeconfig_source(env: Mapping[str, str] | None = None) -> str:
    """Which setting named the kubeconfig, for error messages."""
    env = os.environ if env is None else env
    for name in ("KTX_KUBECONFIG", "KUBECONFIG"):
        if env.get(name, "").strip():
            return name
    return "KUBECONFIG (not set: the default)"



def check_cluster_access(kubeconfig: str | None, context: str | None, source: str, timeout: float = 5.0) -> None:
    """Before any Job is created: the kubeconfig exists and loads, its context exists, and its
    API server answers. Raises ClusterAccessError naming the file (or server), the setting and
    the fix."""
    import kubernetes
    import urllib3

    path = os.path.expanduser(kubeconfig or kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION)
    if not os.path.isfile(path):
        raise ClusterAccessError(
            f"{source}={path}: no such kubeconfig file, so the Kubernetes executor cannot reach a cluster and "
            f"created no Job. {_ACCESS_FIX}")
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(path, context=context, client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        what = f"KTX_KUBE_CONTEXT={context}: " if context else ""
        raise ClusterAccessError(
            f"{what}the kubeconfig {path} ({source}) cannot be used: {exc}. No Job was created. {_ACCESS_FIX}"
        ) from exc
    configuration.retries = 1
    try:
        with kubernetes.client.ApiClient(configuration) as api:
            kubernetes.client.VersionApi(api).get_code(_request_timeout=timeout, _preload_content=False)
    except kubernetes.client.ApiException:
        return  # it answered (401/403 are the credentials' business, told by the first real call)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        used = f", context {context} (KTX_KUBE_CONTEXT)" if context else ""
        raise ClusterAccessError(
            f"the Kubernetes API server {configuration.host} does not answer ({reason}); it comes from the kubeconfig "
            f"{path} ({source}{used}). No Job was created. {_ACCESS_FIX}") from exc
