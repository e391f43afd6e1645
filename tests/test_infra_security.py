"""infra/k8s and the pipeline's pods against the restricted Pod Security Standard, MinIO's scoped users, and
the retraining CronJob's identity in multi-user Kubeflow. Rendered with the small kustomize of test_infra
and, where kubectl is on PATH, by `kubectl kustomize` (test_infra checks both render the same)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_infra import K8S, OVERLAYS, _containers, _key, _pod_spec, _secret_templates, render

from pipelines.product_gan import S3_KEYS
from pipelines.settings import pipeline_params
from productgan.registry.config import RegisterConfig

REPO = Path(__file__).resolve().parents[1]
CFG = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text()))
CFG_REGISTER_MODEL = RegisterConfig().model_name

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

def test_cronjob_runs_as_its_own_account_with_no_kubernetes_token_and_no_istio_sidecar():
    """The CronJob talks to the KFP API only: a dedicated service account whose Role grants what a submitted
    run needs on KFP's virtual resources, no Kubernetes API token mounted, the audience-bound Kubeflow token
    projected instead."""
    objs = {_key(o): o for o in render(K8S / "overlays" / "production-cronjob")}
    cron = objs[("CronJob", "productgan-retrain")]
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    pod = _pod_spec(cron)
    account = pod["serviceAccountName"]
    assert account == "productgan-retrain" and pod["automountServiceAccountToken"] is False
    assert objs[("ServiceAccount", account)]["automountServiceAccountToken"] is False
    (token,) = [v["projected"]["sources"][0]["serviceAccountToken"] for v in pod["volumes"] if "projected" in v]
    assert token["audience"] == "pipelines.kubeflow.org" and token["expirationSeconds"] <= 3600
    binding = objs[("RoleBinding", account)]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "kubeflow"}]
    role = objs[("Role", binding["roleRef"]["name"])]
    assert binding["roleRef"]["kind"] == "Role"
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["pipelines.kubeflow.org"]  # KFP's resources, nothing of Kubernetes' own
        assert set(rule["verbs"]) <= {"create", "get", "list"}, rule
    assert not [o for o in objs.values() if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    # the account is a setting of the overlay (a patch), not buried in the component
    kust = yaml.safe_load((K8S / "overlays" / "production-cronjob" / "kustomization.yaml").read_text())
    (patch,) = [p["path"] for p in kust["patches"]]
    patched = yaml.safe_load((K8S / "overlays" / "production-cronjob" / patch).read_text())
    assert patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == account


# --- who may reach MLflow, PostgreSQL and MinIO ---------------------------------------------------------------

def _pod_labels(obj: dict) -> dict[str, str]:
    spec = obj.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template", {})
    return template.get("metadata", {}).get("labels", {})


def _allowed_sources(objs: list[dict], target_labels: dict[str, str], port: int) -> list[dict[str, str]] | None:
    """The pod label sets allowed to reach pods labelled ``target_labels`` on ``port``: None when no policy
    selects those pods (anyone may), else the podSelectors of the matching rules."""
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"
                and o["spec"]["podSelector"]["matchLabels"].items() <= target_labels.items()]
    if not policies:
        return None
    sources = []
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            if any(p["port"] == port for p in rule.get("ports", [])):
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, peer  # this namespace's pods only, never an ipBlock
                    sources.append(peer["podSelector"]["matchLabels"])
    return sources


def _reaches(source: dict[str, str], sources: list[dict[str, str]] | None) -> bool:
    return sources is None or any(s.items() <= source.items() for s in sources)


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_only_the_pipeline_and_the_studio_reach_mlflow_postgres_and_minio(folder, tmp_path):
    from components.pytorchjob import JobSpec, render_pytorchjob
    from components.runtime import STEP_POD_LABELS
    from pipelines.product_gan import compile_pipeline

    objs = render(folder)
    workloads = {o["metadata"]["name"]: _pod_labels(o) for o in _workloads(objs)}
    mlflow, postgres, minio = (workloads[f"productgan-{n}"] for n in ("mlflow", "postgres", "minio"))
    # the pods the pipeline starts carry STEP_POD_LABELS: every compiled step, and the PyTorchJob's replicas
    compiled = compile_pipeline(tmp_path / "p.yaml", (REPO / "params.yaml").read_text())
    _, platform = yaml.safe_load_all(compiled.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors and all(e.get("podMetadata", {}).get("labels") == STEP_POD_LABELS for e in executors.values())
    job = render_pytorchjob(JobSpec(name="t", image="i", pvc_name="c", mount_path="/c", work_dir="/c/w",
                                    data_dir="/c/d", out_dir="/c/o"))
    for replica in job.spec.pytorch_replica_specs.values():
        assert replica.template.metadata.labels == STEP_POD_LABELS
    step, studio, stranger = STEP_POD_LABELS, {"app.kubernetes.io/name": "productgan-studio"}, {"app": "anything"}

    to_mlflow = _allowed_sources(objs, mlflow, 5000)
    assert _reaches(step, to_mlflow) and _reaches(studio, to_mlflow) and not _reaches(stranger, to_mlflow)
    assert not _reaches(minio, to_mlflow) and not _reaches(postgres, to_mlflow)
    to_postgres = _allowed_sources(objs, postgres, 5432)
    assert _reaches(mlflow, to_postgres)
    assert not any(_reaches(labels, to_postgres) for name, labels in workloads.items() if name != "productgan-mlflow")
    assert not _reaches(step, to_postgres) and not _reaches(studio, to_postgres)
    to_s3 = _allowed_sources(objs, minio, 9000)
    assert _reaches(mlflow, to_s3) and _reaches(step, to_s3) and _reaches(workloads["productgan-minio-setup"], to_s3)
    assert not _reaches(stranger, to_s3) and not _reaches(studio, to_s3)
    assert _allowed_sources(objs, minio, 9001) == []  # the console: no pod at all
    (service,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "productgan-minio"]
    assert [p["port"] for p in service["spec"]["ports"]] == [9000]
    if "productgan-mlflow-users" in workloads:
        assert _reaches(workloads["productgan-mlflow-users"], to_mlflow)


# --- MLflow: the steps' user is not the admin; no password on a command line ---------------------------------

def test_pipeline_steps_never_get_the_mlflow_admin_account():
    cfg = CFG
    for folder in OVERLAYS:
        objs = render(folder)
        seen_by: dict[str, set[str]] = {}
        for o in _workloads(objs):
            for c in _containers(o):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        seen_by.setdefault(ref["name"], set()).add(o["metadata"]["name"])
        if folder.name.startswith("production"):
            assert seen_by["productgan-mlflow-admin"] == {"productgan-mlflow", "productgan-mlflow-users"}
            (server,) = _containers(next(o for o in _workloads(objs) if o["metadata"]["name"] == "productgan-mlflow"))
            admin = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in server["env"]
                     if e["name"].startswith("MLFLOW_AUTH_ADMIN_")}
            assert set(admin.values()) == {"productgan-mlflow-admin"}, admin
        assert "productgan-mlflow-admin" != cfg.mlflow_secret
    secrets = _secret_templates()
    assert secrets[cfg.mlflow_secret]["MLFLOW_TRACKING_USERNAME"] != secrets["productgan-mlflow-admin"][
        "MLFLOW_TRACKING_USERNAME"]


def test_no_password_is_on_a_command_line():
    """Secrets reach containers as environment variables, never as $(VAR) in command or args (a process's
    command line is readable by every user of the node: ps, /proc/<pid>/cmdline)."""
    for folder in OVERLAYS + [K8S / "base"]:
        for o in _workloads(render(folder)):
            for c in _containers(o):
                secret_vars = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
                line = " ".join(c.get("command", []) + c.get("args", []))
                used = set(re.findall(r"\$\((\w+)\)", line))
                assert not used & secret_vars, (folder.name, o["metadata"]["name"], used & secret_vars)


def _process_group_cmdlines(pgid: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.mark.slow
def test_the_production_mlflow_setup_gives_the_steps_a_user_that_cannot_administer(tmp_path, monkeypatch):
    """overlays/production as it runs: `mlflow server --app-name basic-auth` on PostgreSQL (tracking store and
    user store) with the password only in PGPASSWORD, the admin from the environment; the users Job's own
    script creates the steps' user (twice: a rerun changes nothing). That user registers generators (runs,
    versions, the champion alias, the promotion lock) on a model the admin had created, and may not
    administer. No process of the server holds the PostgreSQL password on its command line."""
    import contextlib

    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from registry_helpers import fake_scorer, make_candidate, server_client_env
    from servers import MlflowServer, PostgresCluster, S3Server

    from productgan.registry.register import register_generator

    pg_password, admin_password, steps_password = "Pg-Canary-pw-8a1e", "Admin-Canary-pw-3b7d", "Steps-Canary-pw-5c2f"
    objs = {_key(o): o for o in render(K8S / "overlays" / "production")}
    (job,) = _containers(objs[("Job", "productgan-mlflow-users")])
    secrets = _secret_templates()
    steps_user = secrets["productgan-mlflow"]["MLFLOW_TRACKING_USERNAME"]
    with contextlib.ExitStack() as stack:
        s3 = S3Server().start()
        stack.callback(s3.stop)
        s3.create_bucket()
        cluster = PostgresCluster(pg_password)
        stack.callback(cluster.stop)
        cluster.start()
        cluster.create_database("mlflow_auth")
        ini = tmp_path / "basic_auth.ini"
        ini.write_text(secrets["productgan-mlflow-server"]["basic_auth.ini"].replace(
            "productgan-postgres:5432", f"127.0.0.1:{cluster.port}"))
        server = MlflowServer(
            tmp_path / "server", f"postgresql://127.0.0.1:{cluster.port}/mlflow", s3.endpoint,
            auth_env={"MLFLOW_FLASK_SERVER_SECRET_KEY": "test-flask-key-0123", "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                      "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password},
            env={"PGUSER": cluster.USER, "PGPASSWORD": pg_password})
        stack.callback(server.stop)
        server.start()
        commands = _process_group_cmdlines(server.proc.pid)
        assert commands and not [c for c in commands if pg_password in c], commands

        client_env = server_client_env(monkeypatch, tmp_path)
        client_env.setenv("MLFLOW_TRACKING_URI", server.url)
        client_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        client_env.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        from mlflow import MlflowClient

        MlflowClient(server.url).create_registered_model(CFG_REGISTER_MODEL)  # an admin made it before
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update({e["name"]: e["value"] for e in job["env"] if "value" in e})
        env.update(MLFLOW_URL=server.url, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_password,
                   STEPS_USERNAME=steps_user, STEPS_PASSWORD=steps_password)
        for _ in range(2):
            assert job["command"] == ["python", "-c"]
            res = subprocess.run([sys.executable, "-c", job["args"][0]], env=env, capture_output=True, text=True,
                                 timeout=300)
            assert res.returncode == 0, res.stdout + res.stderr[-3000:]
        assert f"{steps_user}: MANAGE on registered_model {CFG_REGISTER_MODEL}" in res.stdout

        client_env.setenv("MLFLOW_TRACKING_USERNAME", steps_user)
        client_env.setenv("MLFLOW_TRACKING_PASSWORD", steps_password)
        (tmp_path / "prepared").mkdir()
        decisions = [register_generator(*make_candidate(tmp_path / f"c{i}", {"fd_domain": fd, "class_accuracy": 0.8},
                                                        seed=i), data_dir=tmp_path / "prepared", scorer=fake_scorer)
                     for i, fd in enumerate((10.0, 5.0))]
        assert [d["decision"] for d in decisions] == ["promoted", "promoted"]
        assert MlflowClient(server.url).get_model_version_by_alias(CFG_REGISTER_MODEL, "champion").version == "2"
        for forbidden in (lambda a: a.create_user("mallory", "Mallory-pw-12345"),
                          lambda a: a.update_user_admin(steps_user, True)):
            with pytest.raises(MlflowException, match="403"):
                forbidden(AuthServiceClient(server.url))
        assert pg_password not in server.log() and admin_password not in server.log()
