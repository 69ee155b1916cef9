"""A small Kubernetes API emulator with a process "kubelet", for tests and laptops.

It serves a subset of the Kubernetes REST API over real HTTP on loopback, so the
official ``kubernetes`` Python client (and therefore dagster-k8s's
``DagsterKubernetesClient``, ``kubectl``-less scripts, etc.) can talk to it through a
generated kubeconfig. A built-in Job controller and "kubelet" turn every
``batch/v1`` Job into Pods and every Pod into a local subprocess.

Why not kmock's ``KubernetesEmulator``? It is an asyncio in-memory object store; it
has no label/field selectors, no server-set metadata (uid, resourceVersion), no
status/log subresources and no validation, and everything here would have to be
layered on top of it from inside its event loop. A threaded stdlib server with these
pieces built in is smaller and easier to reason about.

What it does
------------
* Resources: namespaces, pods (+ ``/status``, ``/log``, ``/eviction``), configmaps, secrets,
  serviceaccounts, services, persistentvolumeclaims, events (core/v1); jobs
  (+ ``/status``) (batch/v1); roles and rolebindings (rbac/v1, stored only).
* Verbs: get, list, watch (chunked stream, ``resourceVersion``, ``timeoutSeconds``),
  create, replace (PUT), patch (merge, strategic-as-merge, JSON patch), delete,
  deletecollection; ``labelSelector`` (equality and set-based) and ``fieldSelector``
  (dotted-path equality/inequality) on list/watch/deletecollection.
* Server-side metadata (uid, resourceVersion, creationTimestamp, generation) and a
  few validations a real API server performs: namespace must exist, names must be
  RFC 1123 (Jobs <= 63 chars), labels must be valid, containers need a name and an
  image, resource quantities must parse and requests must not exceed limits,
  409 on duplicates, 404 on missing objects.
* Job controller: creates Pods from ``spec.template`` (labels incl. ``job-name``,
  ``controller-uid`` and the ``batch.kubernetes.io/*`` ones, owner reference),
  honours ``parallelism``, ``completions``, ``completionMode: Indexed``
  (``JOB_COMPLETION_INDEX``), ``backoffLimit`` (a failed Pod is replaced by a new
  one until the limit is exceeded), ``activeDeadlineSeconds``, ``suspend`` and
  ``ttlSecondsAfterFinished``, ``podFailurePolicy`` (``onExitCodes``/``onPodConditions``;
  ``FailJob``, ``Ignore``, ``Count``); keeps ``status.active/ready/succeeded/failed``,
  ``startTime``/``completionTime`` and the ``Complete``/``Failed`` conditions; emits
  events. Deleting a Job orphans its Pods unless ``propagationPolicy`` is
  ``Background``/``Foreground`` (the batch/v1 default, as in a real cluster).
* Kubelet: every Pod (from a Job or created directly) runs its init containers
  and then its first container as a local subprocess: ``command + args`` (with
  ``$(VAR)`` expansion), env from ``value``/``configMapKeyRef``/``secretKeyRef``/
  ``fieldRef``/``resourceFieldRef`` and ``envFrom``. Output (stdout + stderr) is served
  on ``/api/v1/namespaces/{ns}/pods/{name}/log`` (``tailLines``, ``timestamps``,
  ``follow``, ``limitBytes``). Phase goes Pending -> Running -> Succeeded/Failed with
  ``containerStatuses[].state.terminated.exitCode``. A Pod that references a missing
  ConfigMap/Secret waits in ``CreateContainerConfigError`` until it appears, like a
  real kubelet.
* Disruptions: ``POST .../pods/{name}/eviction`` (policy/v1 Eviction, what ``kubectl
  drain`` sends) and :meth:`KubeEmulator.disrupt` (any reason: ``PreemptionByScheduler``,
  ``DeletionByTaintManager``, ...) give the pod the ``DisruptionTarget`` condition, SIGTERM
  then SIGKILL after the grace period, phase ``Failed``; the Job counts it, then the pod
  object is gone, as on a real cluster.
* Volumes are mapped to local directories under a per-Pod root: ``hostPath`` via the
  ``host_paths`` mapping (e.g. ``{"/mnt/data": "<repo>/data"}``; unmapped host paths
  get a scratch dir), ``configMap``/``secret`` are materialised as files (``items``
  and ``subPath`` supported), ``emptyDir`` and ``persistentVolumeClaim`` are scratch
  dirs. Since a local process cannot see ``/mnt/data``, env values, args and
  ``workingDir`` that are absolute paths at or under a ``mountPath`` (or a parent of
  one, like ``DAGSTER_HOME`` when only ``dagster.yaml`` is mounted) are rewritten to
  the Pod root, where every mount is a symlink to its local directory. Mount paths
  embedded in longer args (``sh -c "ls /mnt/data"``) are rewritten too; paths that a
  program builds itself at run time (``"/mnt" + "/data"``) are not.

Container pods (``runtime="docker"``)
------------------------------------
With a Docker daemon, each container of a Pod runs as a container of the Pod's image
(``ktx_dagster/testing/docker_pods.py``): memory and cpu limits become cgroup limits, so a
step over its memory limit is OOM-killed for real and its status says ``OOMKilled`` (exit
137); the security context applies (user, group, non-root, read-only root filesystem,
capabilities, no privilege escalation); every volume is a bind mount of the directory
prepared for it; env, ``workingDir``, ``command`` and ``args`` follow Kubernetes' rules, and
nothing of this machine's environment leaks in. An image that is not present leaves the Pod
waiting in ``ErrImageNeverPull`` (there is no registry). Containers use the host network, so
pods reach loopback services (the emulated API, PostgreSQL, S3) as the tests do. The limits
below that concern resources, images and isolation apply to the default ``runtime="process"``.

Control-plane pods (``runtime="control-plane"``)
------------------------------------------------
To measure what many partitions cost Dagster and the API server rather than the pods
themselves, a pod whose command runs ``dagster ...`` (``api execute_step`` behind the step
wrapper, ``api execute_run``) runs that command forked from the run launcher's warm fork
server (``ktx_dagster.warm``, with dagster-k8s and ktx_dagster preloaded; ``warm_pods``): no interpreter start-up, the
step itself and all its events real. The kubelet counts those pods' CPU
(``pod_cpu_seconds``, ``pods_run``). Other commands run as in ``runtime="process"``.

Limits (plainly)
----------------
* No scheduling, nodes, node selectors, tolerations, affinity or priorities: every
  Pod starts at once on "this machine". ``nodeName`` is ``emulator``.
* No resource enforcement: cpu/memory/GPU/ephemeral-storage requests and limits are
  validated and stored, never enforced; there is no OOM kill, no eviction of its own
  (only the Eviction API and ``disrupt``), and a
  ``nvidia.com/gpu`` request does not give the process a GPU.
* No images: the ``image`` field is required but ignored; no pulls, no
  ``imagePullPolicy``, no entrypoint. The command runs with *this* Python
  environment (the emulator prepends the running interpreter's ``bin`` directory to
  ``PATH`` so ``dagster`` resolves) and in ``cwd`` (default: the emulator's cwd).
* No isolation: no containers, namespaces, users, securityContext, network policy or
  service networking; pods share this machine's filesystem, network and processes.
  ``readOnlyRootFilesystem`` is not enforced.
* Only ``containers[0]`` runs (sidecars are ignored); ``restartPolicy`` other than
  ``Never`` is treated as ``Never`` (a failed container fails the Pod; the Job
  controller then creates a new Pod while within ``backoffLimit``).
* No RBAC or authentication: any token is accepted, Roles are stored only.
* No in-cluster config: pods get ``KUBECONFIG`` pointing at the emulator instead of a
  service-account token (``inject_kubeconfig=True``, the default).
* No admission webhooks, quotas, LimitRanges, ``podReplacementPolicy``, finalizer controllers or garbage collection beyond Job->Pod deletion.
* State lives in memory and is lost when the emulator stops.

One job per module: ``emulator`` (``KubeEmulator``: the object store and its lifecycle),
``http_api`` (the REST layer), ``job_controller``, ``kubelet`` (processes or containers,
volumes, env, disruptions), ``warm_pods`` (the control-plane runtime), ``selectors``, ``patches``, ``objects`` (kinds, errors,
quantities) and ``cli``.

Use ``python -m ktx_dagster.testing.k8s_emulator --kubeconfig /tmp/kubeconfig.yaml
--host-path /mnt/data=./data`` to run one in the foreground (e.g. to point a local
``dagster dev`` at it).
"""

from __future__ import annotations

from ktx_dagster.testing.k8s_emulator.cli import main
from ktx_dagster.testing.k8s_emulator.emulator import KubeEmulator
from ktx_dagster.testing.k8s_emulator.job_controller import pod_failure_policy_match
from ktx_dagster.testing.k8s_emulator.objects import ApiError
from ktx_dagster.testing.k8s_emulator.selectors import match_label_selector, parse_label_selector

__all__ = ["ApiError", "KubeEmulator", "main", "match_label_selector", "parse_label_selector",
           "pod_failure_policy_match"]
