"""infra/k8s and the pipeline's pods against the restricted Pod Security Standard, MinIO's scoped users, and
the retraining CronJob's identity in multi-user Kubeflow. Rendered with the small kustomize of test_infra
and, where kubectl is on PATH, by `kubectl kustomize` (test_infra checks both render the same)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_infra import K8S, OVERLAYS, _containers, _key, _pod_spec, _secret_templates, render

from pipelines.product_gan import S3_KEYS
from pipelines.settings import pipeline_params

REPO = Path(__file__).resolve().parents[1]
CFG = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text()))

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.32), "Restricted" with "Baseline".
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(pod: dict) -> list[str]:
    """What the restricted Pod Security Standard refuses in a pod spec (the rules these manifests can meet)."""
    out = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(f"{flag} is set")
    for vol in pod.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {vol['name']}: type {kinds} not allowed")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost (pod or container), is {seccomp}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


def _workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if _containers(o)]


@pytest.mark.parametrize("folder", OVERLAYS + [K8S / "base"], ids=lambda p: p.name)
def test_every_pod_meets_the_restricted_pod_security_standard(folder):
    workloads = _workloads(render(folder))
    assert workloads
    for o in workloads:
        assert not restricted_violations(_pod_spec(o)), (o["kind"], o["metadata"]["name"],
                                                         restricted_violations(_pod_spec(o)))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH; the pure-Python render is checked")
def test_kubectl_rendered_pods_meet_it_too():
    for folder in OVERLAYS:
        out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for o in _workloads([d for d in yaml.safe_load_all(out.stdout) if d]):
            assert not restricted_violations(_pod_spec(o)), (folder.name, o["metadata"]["name"])


def test_the_checker_refuses_what_the_standard_refuses():
    good = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                            "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(good) == []
    no_seccomp = json.loads(json.dumps(good))
    del no_seccomp["securityContext"]["seccompProfile"]
    assert "seccompProfile" in " ".join(restricted_violations(no_seccomp))
    host = json.loads(json.dumps(good))
    host["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
    assert restricted_violations(host) == ["volume h: type {'hostPath'} not allowed"]


def _backend_executor_pod(platform_executor: dict) -> dict:
    """The pod a KFP >= 2.16 backend makes for a step: its defaults (backend/src/v2/compiler/argocompiler/
    security_context.go: applySecurityContextToExecutorTemplate: pod seccompProfile RuntimeDefault; main
    container allowPrivilegeEscalation false, capabilities drop ALL, seccompProfile RuntimeDefault; launcher
    init container also runAsNonRoot) plus the step's kfp-kubernetes securityContext (the driver applies it to
    the main container: backend/src/v2/driver/k8s.go)."""
    base = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
    user = {k: (int(v) if k in ("runAsUser", "runAsGroup") else v)
            for k, v in (platform_executor.get("securityContext") or {}).items()}
    return {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "kfp-launcher", "securityContext": {**base, "runAsNonRoot": True}}],
            "containers": [{"name": "main", "securityContext": {**base, **user}}]}


def test_pipeline_step_pods_meet_it_on_a_current_kfp_backend(tmp_path):
    """seccompProfile cannot be set from the KFP SDK; the backend sets it. runAsNonRoot it leaves to the
    step (user images may run as root), which is why every step sets it (pipeline.run_as_user)."""
    from pipelines.product_gan import compile_pipeline

    text = (REPO / "params.yaml").read_text()
    _, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", text).read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for label, executor in executors.items():
        assert restricted_violations(_backend_executor_pod(executor)) == [], label
    # without the setting the backend's pod is refused
    bare = restricted_violations(_backend_executor_pod({}))
    assert bare == ["main: runAsNonRoot must be true (pod or container)"]


# --- MinIO: scoped users, root credentials for MinIO only ---------------------------------------------------

def _policies() -> dict[str, dict]:
    base = {_key(o): o for o in render(K8S / "base")}
    data = base[("ConfigMap", "productgan-minio-policies")]["data"]
    return {name.removesuffix(".json"): json.loads(text) for name, text in data.items()}


def _granted(policy: dict) -> set[tuple[str, str]]:
    pairs = set()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        for action in st["Action"]:
            for resource in st["Resource"]:
                pairs.add((action, resource))
    return pairs


def test_scoped_minio_users_may_use_their_bucket_only():
    policies = _policies()
    steps = _granted(policies["productgan-steps"])
    assert {r for _, r in steps} == {"arn:aws:s3:::products", "arn:aws:s3:::products/*"}
    assert {a for a, _ in steps} == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}  # read-only
    mlflow = _granted(policies["productgan-mlflow"])
    assert {r for _, r in mlflow} == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    assert ("s3:PutObject", "arn:aws:s3:::mlflow/*") in mlflow
    for policy in policies.values():
        for action, resource in _granted(policy):
            assert "*" not in action and not action.startswith("admin:"), action
            assert resource.removeprefix("arn:aws:s3:::").split("/")[0] not in ("", "*"), resource


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_only_minio_and_its_setup_job_see_the_root_credentials(folder):
    objs = render(folder)
    seen_by: dict[str, set[str]] = {}
    for o in _workloads(objs):
        for c in _containers(o):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    seen_by.setdefault(ref["name"], set()).add(o["metadata"]["name"])
    assert seen_by["productgan-minio-root"] == {"productgan-minio", "productgan-minio-setup"}
    assert seen_by["productgan-s3"] == {"productgan-minio-setup"}  # the steps get it from KFP (secretAsEnv)
    assert seen_by["productgan-mlflow-s3"] == {"productgan-mlflow", "productgan-minio-setup"}
    # the Secret the pipeline steps get (pipeline.s3_secret) is the scoped steps user the setup Job creates
    (job,) = [o for o in objs if o["metadata"]["name"] == "productgan-minio-setup"]
    (mc,) = _containers(job)
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in mc["env"]}
    assert (env["STEPS_ACCESS_KEY"]["name"], env["STEPS_ACCESS_KEY"]["key"]) == (CFG.s3_secret, S3_KEYS[0])
    assert (env["STEPS_SECRET_KEY"]["name"], env["STEPS_SECRET_KEY"]["key"]) == (CFG.s3_secret, S3_KEYS[1])
    script = mc["args"][0]
    assert "scoped_user productgan-steps \"$STEPS_ACCESS_KEY\"" in script
    assert "already in effect" in script  # a rerun of the Job (policy already attached) still succeeds
    assert set(_policies()) == {"productgan-steps", "productgan-mlflow"}
    secrets = _secret_templates()
    assert set(secrets["productgan-minio-root"]) == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}


def test_the_setup_script_is_valid_shell():
    (job,) = [o for o in render(K8S / "base") if o["metadata"]["name"] == "productgan-minio-setup"]
    (mc,) = _containers(job)
    out = subprocess.run(["sh", "-n", "-c", mc["args"][0]], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr


# --- the retraining CronJob -----------------------------------------------------------------------------------

def test_cronjob_runs_as_the_profiles_editor_without_an_istio_sidecar():
    objs = {_key(o): o for o in render(K8S / "overlays" / "production-cronjob")}
    cron = objs[("CronJob", "productgan-retrain")]
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert _pod_spec(cron)["serviceAccountName"] == "default-editor"
    # the service account is a setting of the overlay (a patch), not buried in the component
    kust = yaml.safe_load((K8S / "overlays" / "production-cronjob" / "kustomization.yaml").read_text())
    (patch,) = [p["path"] for p in kust["patches"]]
    patched = yaml.safe_load((K8S / "overlays" / "production-cronjob" / patch).read_text())
    assert patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == "default-editor"
