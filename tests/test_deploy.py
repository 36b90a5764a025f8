"""The Kubernetes manifests and the Dockerfile hold what operators rely on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from tokenbroker.config.load import settings_from_dict
from tokenbroker.families import vocabulary
from tokenbroker.policy.parse import parse_policy_text

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"


def documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def test_config_map_is_the_repository_config() -> None:
    """deploy/configmap.yaml is what scripts/render_configmap.py makes of config/: the
    cluster runs the repository's files, and the two cannot drift."""
    spec = importlib.util.spec_from_file_location(
        "render", ROOT / "scripts" / "render_configmap.py"
    )
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert (DEPLOY / "configmap.yaml").read_text() == render.render()
    data = documents()["ConfigMap/tokenbroker-config"]["data"]
    assert data["policies.yaml"] == (ROOT / "config" / "policies.yaml").read_text()


def test_config_map_holds_a_valid_config_and_policy_file() -> None:
    """The ConfigMap's broker.yaml and policies.yaml pass the product's own validation."""
    data = documents()["ConfigMap/tokenbroker-config"]["data"]
    settings = settings_from_dict(yaml.safe_load(data["broker.yaml"]), {}, require_secrets=False)
    assert settings.fail_mode == "closed"
    assert "standard" in parse_policy_text(data["policies.yaml"], vocabulary("openai")).policies


def test_deployment_probes_and_locked_down_security() -> None:
    """Probes on /readyz and /healthz, non-root, read-only root, no capabilities, and a
    termination grace above shutdown delay + grace."""
    deployment = documents()["Deployment/tokenbroker"]["spec"]["template"]["spec"]
    [container] = deployment["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert deployment["terminationGracePeriodSeconds"] > 5 + 30
    assert "limits" in container["resources"]


def test_every_piece_is_there() -> None:
    """Deployment, Service, HPA, PDB, ConfigMap, the policy Job, a Secret example, dev Redis."""
    kinds = {name.split("/")[0] for name in documents()}
    assert kinds >= {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Job",
        "Secret",
    }
    assert "Deployment/redis" in documents()


def test_dockerfile_runs_as_non_root() -> None:
    """The image drops to an unprivileged user."""
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["serve"]')


def test_dev_redis_keeps_the_limits_across_restarts() -> None:
    """The dev Redis writes an append-only file, fsynced every second, to a persistent
    volume: a restart does not hand every user a fresh burst."""
    docs = documents()
    redis = docs["Deployment/redis"]["spec"]["template"]["spec"]
    args = redis["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    [volume] = redis["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] in {
        name.split("/")[1] for name in docs if name.startswith("PersistentVolumeClaim/")
    }
