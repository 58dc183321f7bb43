"""The Kubernetes manifests, offline (no cluster here): they build with `kubectl kustomize`,
validate against the Kubernetes schemas (kubernetes-validate, strict), and keep their
invariants: one GPU per GPU worker pod and no slot leasing, nothing published, no secret
inline, and the same PNAS_* settings as the compose stacks.

kubectl comes from scripts/services.sh (Debian's kubernetes-client when missing).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "k8s"
OVERLAYS = ["cpu", "gpu"]
KUBE_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are checked against
SECRETS = {"pnas-db", "pnas-redis", "pnas-tls", "pnas-dashboard"}  # created by the operator (README)


def _build(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: scripts/services.sh installs it (Debian package kubernetes-client)", pytrace=False)
    res = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request) -> tuple[str, list[dict]]:
    return request.param, _build(request.param)


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")}


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_manifests_validate_against_the_kubernetes_schemas(built) -> None:
    overlay, docs = built
    kinds = sorted({d["kind"] for d in docs})
    assert {"Namespace", "ConfigMap", "Service", "StatefulSet", "Deployment", "Job", "ScaledObject", "TriggerAuthentication"} <= set(kinds)
    for d in docs:
        if d["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: its schema is not Kubernetes'; checked below
        kubernetes_validate.validate(d, KUBE_VERSION, strict=True)  # raises with the path and the reason
    # KEDA: the worker Deployment scales on the Celery queue's Redis list, with the broker's secret.
    so = _one(docs, "ScaledObject", "worker")
    assert so["spec"]["scaleTargetRef"]["name"] == "worker" and _one(docs, "Deployment", "worker")
    (trig,) = so["spec"]["triggers"]
    assert trig["type"] == "redis" and trig["metadata"]["listName"] == "pnas" and trig["metadata"]["enableTLS"] == "true"
    auth = _one(docs, "TriggerAuthentication", trig["authenticationRef"]["name"])
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} <= SECRETS
    assert so["spec"]["minReplicaCount"] >= 1  # never down to zero while children still train


def test_one_gpu_per_worker_pod_and_no_slot_leasing(built) -> None:
    overlay, docs = built
    specs = _pod_specs(docs)
    (worker,) = specs["worker"]["containers"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["PNAS_GPU_SLOTS"]["value"] == ""  # the cluster assigns GPUs; no leasing in Redis
    limits = worker.get("resources", {}).get("limits", {})
    if overlay == "gpu":
        assert limits.get("nvidia.com/gpu") == 1 and worker["command"][2:4] == ["--gpu", "auto"]
        assert _one(docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":gpu")
    else:
        assert "nvidia.com/gpu" not in limits and worker["command"][2:4] == ["--gpu", "none"]
    for name, spec in specs.items():  # no other pod asks for a GPU
        if name != "worker":
            assert all("nvidia.com/gpu" not in (c.get("resources", {}).get("limits") or {}) for c in spec["containers"]), name


def test_nothing_published_and_no_secret_inline(built) -> None:
    _, docs = built
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are created by the operator, never in the manifests"
    for d in docs:
        if d["kind"] == "Service":
            assert d["spec"].get("type", "ClusterIP") == "ClusterIP" and not d["spec"].get("externalIPs"), d["metadata"]["name"]
    url_password = re.compile(r"://[^/@]*:([^@/]*)@")
    for name, spec in _pod_specs(docs).items():
        assert not spec.get("hostNetwork"), name
        for c in spec["containers"] + spec.get("initContainers", []):
            assert all("hostPort" not in p for p in c.get("ports", [])), name
            for e in c.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET", e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{name}: {e['name']} must come from a secret"
                for pw in url_password.findall(e.get("value", "")):
                    assert re.fullmatch(r"\$\([A-Z_]+\)", pw), f"{name}: {e['name']} holds a password inline"
            for arg in c.get("args", []) + c.get("command", []):
                assert "change-me" not in arg
            secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
            assert secrets | refs <= SECRETS, name
    # Clients get the CA certificate only, never the server's key.
    for name in ("migrate", "controller", "worker", "dashboard"):
        (vol,) = [v for v in _pod_specs(docs)[name]["volumes"] if "secret" in v]
        assert vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], name


def _compose_env(path: str, service: str) -> set[str]:
    doc = yaml.safe_load((ROOT / path).read_text())
    return {k for k in (doc["services"][service].get("environment") or {}) if k.startswith("PNAS_")}


def test_same_settings_as_compose(built) -> None:
    _, docs = built
    configmap = set(_one(docs, "ConfigMap", "pnas-settings")["data"])
    specs = _pod_specs(docs)

    def k8s_env(name: str) -> set[str]:
        (c,) = specs[name]["containers"]
        names = {e["name"] for e in c.get("env", [])}
        if any(f.get("configMapRef", {}).get("name") == "pnas-settings" for f in c.get("envFrom", [])):
            names |= configmap
        return {n for n in names if n.startswith("PNAS_")}

    head = {s: _compose_env("docker-compose.yml", s) | _compose_env("docker-compose.head.yml", s) for s in ("migrate", "controller", "worker")}
    host_worker = _compose_env("docker-compose.worker-host.yml", "worker")
    assert host_worker == head["worker"], "the worker-host stack and the head's workers must read the same settings"
    for s, names in head.items():
        assert k8s_env(s) == names, f"{s}: only in compose {sorted(names - k8s_env(s))}, only in k8s {sorted(k8s_env(s) - names)}"
    assert k8s_env("dashboard") == _compose_env("docker-compose.head.yml", "dashboard") | head["controller"] - {"PNAS_CONFIG"}


def test_controller_is_a_job_that_resumes_and_migrations_run_first(built) -> None:
    _, docs = built
    ctl = _one(docs, "Job", "controller")
    assert ctl["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure" and ctl["spec"]["backoffLimit"] > 0
    assert ctl["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["pnas", "search"]
    mig = _one(docs, "Job", "migrate")
    assert mig["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "upgrade", "head"]
    # Every pnas client reaches PostgreSQL through PgBouncer, with TLS checked.
    for name in ("migrate", "controller", "worker", "dashboard"):
        (c,) = _pod_specs(docs)[name]["containers"]
        url = next(e["value"] for e in c["env"] if e["name"] == "PNAS_DATABASE_URL")
        assert "@pgbouncer:6432/" in url and "sslmode=verify-full" in url, name
        broker = next(e["value"] for e in c["env"] if e["name"] == "PNAS_BROKER_URL")
        assert broker.startswith("rediss://") and "ssl_cert_reqs=required" in broker, name
