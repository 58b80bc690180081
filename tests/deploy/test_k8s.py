"""deploy/k8s, offline: every object valid for Kubernetes (kubernetes-validate) or its CRD
(deploy/crds), and consistent with the code: topics from ``contracts``, commands from the
CLI, settings that load, probes on the real endpoints, secrets that exist, static members."""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from contracts.topics import PROJECTOR, Topics
from parley.cli import build_parser
from parley.errors import SettingsError
from parley.settings import Settings, load_settings
from tests.kit.manifests import (
    ALL_INTERFACES,
    CRDS,
    K8S,
    K8S_VERSIONS,
    REPO,
    Obj,
    container,
    env_of,
    gen,
    generated_matches,
    is_custom,
    k8s_objects,
    labels_match,
    load_yaml_docs,
    of_kind,
    one,
    pod_specs,
    validate_builtin,
    validate_custom,
)

OBJECTS = k8s_objects()
DEPLOYED = k8s_objects(include_examples=False)
GEN = gen()
SETTINGS: Settings = GEN.k8s_settings()
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
KAFKA = one(DEPLOYED, "Kafka")
CLUSTER, NAMESPACE = KAFKA.name, KAFKA.body["metadata"]["namespace"]
# Secrets Strimzi creates: the cluster CA certificate and one per KafkaUser.
STRIMZI_SECRETS = {f"{CLUSTER}-cluster-ca-cert": {"ca.crt"}} | {
    u.name: {"password"} for u in of_kind(DEPLOYED, "KafkaUser")}
EXAMPLE_SECRETS = {o.name: set(o.body.get("stringData", {})) | set(o.body.get("data", {}))
                   for o in OBJECTS if o.kind == "Secret"}


# ----------------------------------------------------------------------------- schemas
def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = load_yaml_docs(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == {n for n in on_disk if not n.endswith(".example.yaml")}
    # Only the image transform, and it is the identity on the files (what we validate is
    # what `kubectl apply -k` applies).
    assert set(kustomization) == {"apiVersion", "kind", "resources", "images"}
    [image] = kustomization["images"]
    for _, pod in pod_specs(DEPLOYED):
        assert container(pod)["image"] == f"{image['newName']}:{image['newTag']}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("obj", [o for o in OBJECTS if not is_custom(o.body)], ids=lambda o: o.id)
def test_kubernetes_objects_are_valid(obj: Obj, version: str) -> None:
    validate_builtin(obj.body, version)


@pytest.mark.parametrize("obj", [o for o in OBJECTS if is_custom(o.body)], ids=lambda o: o.id)
def test_custom_resources_match_their_crd_schema(obj: Obj) -> None:
    assert validate_custom(obj.body) == []


@pytest.mark.parametrize("path", sorted(CRDS.glob("*.yaml")), ids=lambda p: p.name)
def test_crd_files_are_valid_crds(path: Path) -> None:
    for crd in load_yaml_docs(path):
        validate_builtin(crd, K8S_VERSIONS[-1])
        assert "subset" in path.read_text().lower()  # says it is not the upstream file


def test_crd_check_catches_typos_and_wrong_values() -> None:
    # The validator must be able to fail: a misspelt field, a bad enum, a missing required.
    topic = dict(one(DEPLOYED, "KafkaTopic", "parley-events-chat").body)
    assert validate_custom(topic) == []
    assert validate_custom(topic | {"spec": topic["spec"] | {"partiton": 3}})
    assert validate_custom(topic | {"spec": topic["spec"] | {"replicas": 0}})
    user = one(DEPLOYED, "KafkaUser").body
    bad_auth = user | {"spec": user["spec"] | {"authentication": {"type": "scram-sha-256"}}}
    assert validate_custom(bad_auth)
    so = one(DEPLOYED, "ScaledObject", "parley-consumer-crm").body
    assert validate_custom(so | {"spec": {k: v for k, v in so["spec"].items() if k != "triggers"}})
    assert validate_custom(topic | {"metadata": {"name": "Parley.Events"}})


def test_builtin_check_catches_typos() -> None:
    from kubernetes_validate import ValidationError

    svc = one(DEPLOYED, "Service", "parley-receiver").body
    with pytest.raises(ValidationError):
        validate_builtin(svc | {"spec": svc["spec"] | {"selektor": {}}}, K8S_VERSIONS[-1])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (optional)")
def test_kubectl_kustomize_renders_the_same_objects() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    rendered = sorted(json.dumps(d, sort_keys=True) for d in yaml.safe_load_all(out) if d)
    loaded = sorted(json.dumps(o.body, sort_keys=True) for o in DEPLOYED)
    assert rendered == loaded


# ------------------------------------------------------------------------------ topics
def test_topics_yaml_is_generated_from_contracts() -> None:
    assert generated_matches(K8S / "topics.yaml", GEN.render_topics()), \
        "deploy/k8s/topics.yaml is out of date: run `python -m deploy.gen`"


def test_kafka_topics_match_the_topic_specs() -> None:
    # Independent of the generator: recompute from contracts what must exist.
    k = SETTINGS.kafka
    topics = Topics(prefix=k.topic_prefix)
    consumers = sorted({container(pod)["args"][1] for _, pod in pod_specs(DEPLOYED)
                        if container(pod)["args"][0] == "consumer"})
    want = {s.name: s for s in (*topics.specs(k.partitions), *topics.ops_specs(), topics.erasures_spec())}
    want |= {topics.dlq(g): topics.dlq_spec(g) for g in [PROJECTOR, *consumers]}
    have = {t.body["spec"]["topicName"]: t for t in of_kind(DEPLOYED, "KafkaTopic")}
    assert set(have) == set(want)
    for name, spec in want.items():
        t = have[name].body
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
        assert t["spec"]["partitions"] == spec.partitions
        assert t["spec"]["replicas"] == k.replication_factor
        extra = GEN.EVENT_TOPIC_EXTRA_CONFIGS if name in topics.event_topics else {}
        assert t["spec"]["config"] == spec.configs(k.replication_factor) | extra
        assert not set(extra) & set(spec.configs(k.replication_factor)), "extras override specs"
    assert want[topics.chat].configs(k.replication_factor)["retention.ms"] == "-1"


# ------------------------------------------------------------------------------- kafka
def test_kafka_cluster_fits_the_settings() -> None:
    k = SETTINGS.kafka
    brokers = sum(p.body["spec"]["replicas"] for p in of_kind(DEPLOYED, "KafkaNodePool")
                  if "broker" in p.body["spec"]["roles"]
                  and p.body["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER)
    assert brokers >= k.replication_factor >= 3
    config = KAFKA.body["spec"]["kafka"]["config"]
    spec = Topics(prefix=k.topic_prefix).specs(k.partitions)[0]
    assert str(config["min.insync.replicas"]) == spec.configs(k.replication_factor)["min.insync.replicas"]
    assert config["auto.create.topics.enable"] is False
    assert config["group.max.session.timeout.ms"] >= k.static_session_timeout_ms
    # The bootstrap address is the Strimzi service of a TLS listener with SCRAM-SHA-512.
    host, _, port = (k.bootstrap or "").rpartition(":")
    assert host == f"{CLUSTER}-kafka-bootstrap.{NAMESPACE}.svc"
    [listener] = [lst for lst in KAFKA.body["spec"]["kafka"]["listeners"] if lst["port"] == int(port)]
    sec = k.security
    assert (sec.protocol, sec.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"


def test_kafka_user_matches_settings_and_acls_cover_parley() -> None:
    k = SETTINGS.kafka
    user = one(DEPLOYED, "KafkaUser", k.security.sasl_username)
    assert user.body["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER
    assert user.body["spec"]["authentication"]["type"] == "scram-sha-512"
    acls = user.body["spec"]["authorization"]["acls"]

    def allowed(kind: str, name: str, op: str) -> bool:
        for acl in acls:
            r = acl["resource"]
            matches = (r["type"] == kind and (kind == "cluster" or (
                name.startswith(r["name"]) if r.get("patternType") == "prefix" else name == r["name"])))
            if matches and acl.get("type", "allow") == "allow" and op in acl["operations"]:
                return True
        return False

    topics = Topics(prefix=k.topic_prefix)
    for topic in [*topics.event_topics, topics.dlq(PROJECTOR)]:
        for op in ("Describe", "Read", "Write", "DescribeConfigs"):
            assert allowed("topic", topic, op), (topic, op)
    for group in [topics.group_id(name) for name in (PROJECTOR, "search", "crm")]:
        assert allowed("group", group, "Read") and allowed("group", group, "Describe"), group
    assert not allowed("topic", "someone-elses-topic", "Read")


# --------------------------------------------------------------------------- workloads
def _command(args: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(args)


@pytest.mark.parametrize("workload", [o for o, _ in pod_specs(DEPLOYED)], ids=lambda o: o.id)
def test_workload_runs_a_real_command_with_loadable_settings(workload: Obj) -> None:
    pod = workload.body["spec"]["template"]["spec"]
    c = container(pod)
    ns = _command(c["args"])  # exits (fails the test) on an unknown command
    assert ns.command in ("receiver", "projector", "consumer")
    env = env_of(c)
    config_path = Path(env["PARLEY_CONFIG"]["value"])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(config_path.parent)]["name"]]["configMap"]["name"] == "parley-config"
    # The settings this pod runs with: the ConfigMap's file, then its environment (Secret
    # values replaced by placeholders of the right shape), then the envFrom Secret's keys.
    literal = {n: e["value"] for n, e in env.items() if "value" in e and n != "PARLEY_CONFIG"}
    for n, e in env.items():
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:  # what the Secret's operator generates, in its shape
            literal[n] = _SHAPES.get(n, f'["{secrets.token_hex(32)}"]')
        elif "fieldRef" in ref:
            literal[n] = f"{workload.name}-0"
    for src in c.get("envFrom", []):
        literal |= real_values(one(OBJECTS, "Secret", src["secretRef"]["name"]).body["stringData"])
    with tempfile.TemporaryDirectory() as tmp:
        toml = Path(tmp) / "parley.toml"
        toml.write_text(one(DEPLOYED, "ConfigMap", "parley-config").body["data"]["parley.toml"])
        settings = load_settings(toml, env=literal)
    if ns.command == "receiver":
        assert settings.sources, "the receiver needs webhook sources"
    # HTTP: the container port is the configured one, probes hit the real endpoints.
    [port] = c["ports"]
    assert port["containerPort"] == settings.http.port and port["name"] == "http"
    assert settings.http.host == ALL_INTERFACES
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    res = c["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"]
    assert c["image"] == f"parley:{VERSION}"
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace > settings.http.shutdown_timeout_s


@pytest.mark.parametrize("workload", [o for o, _ in pod_specs(DEPLOYED)], ids=lambda o: o.id)
def test_workload_meets_the_restricted_pod_security_standard(workload: Obj) -> None:
    pod = workload.body["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001  # the image's USER
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    csc = container(pod)["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in container(pod)["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", SETTINGS.data_dir} <= writable


@pytest.mark.parametrize("workload", [o for o, _ in pod_specs(DEPLOYED)], ids=lambda o: o.id)
def test_kafka_secrets_are_mounted_where_the_settings_read_them(workload: Obj) -> None:
    pod = workload.body["spec"]["template"]["spec"]
    c = container(pod)
    sec = SETTINGS.kafka.security
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path, secret, key in ((sec.ssl_cafile, f"{CLUSTER}-cluster-ca-cert", "ca.crt"),
                              (sec.sasl_password_file, sec.sasl_username, "password")):
        p = Path(path or "")
        vol = volumes[mounts[str(p.parent)]]["secret"]
        assert vol["secretName"] == secret
        assert {"key": key, "path": p.name} in vol["items"]


#: Secret values that are not token lists: the master key and the key store's URL.
_SHAPES = {"PARLEY_PRIVACY__MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "PARLEY_PRIVACY__KEY_STORE": f"postgresql://parley:{secrets.token_hex(16)}@pg:5432/parley"}


def real_values(example: dict[str, str]) -> dict[str, str]:
    """An example Secret's data with each credential list replaced by generated values of the
    same count, as an operator creating the real Secret would."""
    out = dict(example)
    for key, value in example.items():
        if key.endswith(("__AUTH_TOKENS", "__SECRETS")):
            out[key] = json.dumps([secrets.token_hex(32) for _ in json.loads(value)])
    return out


@pytest.mark.parametrize("secret", ["parley-api-tokens", "parley-sources"])
def test_the_example_secrets_placeholders_are_refused_at_start_up(secret: str) -> None:
    # Applying secrets.example.yaml unchanged must not give a running Parley with guessable
    # credentials: every placeholder value fails the settings' strength check.
    data = one(OBJECTS, "Secret", secret).body["stringData"]
    env = ({"PARLEY_HTTP__API_TOKENS": data["tokens"]} if secret == "parley-api-tokens" else data)
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings(None, env=env)
    # ...and each placeholder on its own, not only the first one checked.
    for key, value in env.items():
        if key.endswith(("API_TOKENS", "__AUTH_TOKENS", "__SECRETS")):
            for n, placeholder in enumerate(json.loads(value)):
                lone = real_values(env) | {key: json.dumps(
                    [secrets.token_hex(32)] * n + [placeholder])}
                with pytest.raises(SettingsError, match=f"#{n + 1} looks like a placeholder"):
                    load_settings(None, env=lone if secret == "parley-sources" else
                                  {"PARLEY_HTTP__API_TOKENS": lone[key]})


@pytest.mark.parametrize("workload", [o for o, _ in pod_specs(DEPLOYED)], ids=lambda o: o.id)
def test_credentials_come_from_secrets_only(workload: Obj) -> None:
    # Issue 16, hole 1: no credential in a manifest or the ConfigMap; each one a Secret's.
    c = container(workload.body["spec"]["template"]["spec"])
    for name, e in env_of(c).items():
        if any(w in name for w in ("TOKEN", "SECRET", "PASSWORD")) and not name.endswith("USERNAME"):
            assert "secretKeyRef" in e.get("valueFrom", {}), (workload.id, name)
    assert "PARLEY_HTTP__API_TOKENS" in env_of(c), "every pod serves /metrics: it needs tokens"
    config = tomllib.loads(one(DEPLOYED, "ConfigMap", "parley-config").body["data"]["parley.toml"])
    assert "api_tokens" not in config["http"] and not config["http"].get("allow_open_api")
    assert "sources" not in config and "sasl_password" not in config["kafka"]["security"]


def test_every_referenced_secret_exists_or_is_created_by_strimzi() -> None:
    known = {n: set(keys) for n, keys in (STRIMZI_SECRETS | EXAMPLE_SECRETS).items()}
    refs: list[tuple[str, str | None]] = []
    for _, pod in pod_specs(DEPLOYED):
        c = container(pod)
        refs += [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                 for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        refs += [(s["secretRef"]["name"], None) for s in c.get("envFrom", []) if "secretRef" in s]
        for v in pod["volumes"]:
            if "secret" in v:
                refs += [(v["secret"]["secretName"], i["key"]) for i in v["secret"].get("items", [])]
    for ta in of_kind(DEPLOYED, "TriggerAuthentication"):
        refs += [(r["name"], r["key"]) for r in ta.body["spec"].get("secretTargetRef", [])]
    assert refs
    for name, key in refs:
        assert name in known, f"Secret {name} is neither in secrets.example.yaml nor Strimzi's"
        assert key is None or key in known[name], f"Secret {name} has no key {key}"


def test_group_members_are_static_statefulsets_and_the_receiver_scales_on_cpu() -> None:
    for workload, pod in pod_specs(DEPLOYED):
        command = container(pod)["args"][0]
        env = env_of(container(pod))
        if command in ("projector", "consumer"):
            assert workload.kind == "StatefulSet", workload.id
            assert env["PARLEY_KAFKA__GROUP_INSTANCE_ID"]["valueFrom"] == {
                "fieldRef": {"fieldPath": "metadata.name"}}
            headless = one(DEPLOYED, "Service", workload.body["spec"]["serviceName"]).body
            assert headless["spec"]["clusterIP"] == "None"
        else:
            assert workload.kind == "Deployment" and "PARLEY_KAFKA__GROUP_INSTANCE_ID" not in env
    [hpa] = of_kind(DEPLOYED, "HorizontalPodAutoscaler")
    target = hpa.body["spec"]["scaleTargetRef"]
    receiver = one(DEPLOYED, target["kind"], target["name"])
    assert container(receiver.body["spec"]["template"]["spec"])["args"] == ["receiver"]
    assert hpa.body["spec"]["minReplicas"] >= 2


def test_selectors_pdbs_and_services_point_at_workloads() -> None:
    pods = {o.id: o.body["spec"]["template"]["metadata"]["labels"] for o, _ in pod_specs(DEPLOYED)}
    for o, _ in pod_specs(DEPLOYED):
        sel = o.body["spec"]["selector"]["matchLabels"]
        assert labels_match(sel, pods[o.id])
        pdbs = [p for p in of_kind(DEPLOYED, "PodDisruptionBudget")
                if labels_match(p.body["spec"]["selector"]["matchLabels"], pods[o.id])]
        assert len(pdbs) == 1, f"{o.id} needs exactly one PodDisruptionBudget"
    for svc in of_kind(DEPLOYED, "Service"):
        matched = [i for i, labels in pods.items() if labels_match(svc.body["spec"]["selector"], labels)]
        assert len(matched) == 1, svc.id
        for p in svc.body["spec"]["ports"]:
            assert p["targetPort"] == "http"


def test_cli_jobs_run_real_commands_with_the_workloads_mounts() -> None:
    jobs = of_kind(OBJECTS, "Job")
    assert jobs
    for job in jobs:
        pod = job.body["spec"]["template"]["spec"]
        c = container(pod)
        ns = _command(c["args"])
        assert ns.command == "consumers" and ns.consumers_command == "reset"
        # The same view of config and credentials as the group's own pods.
        [(_, group_pod)] = [(o, p) for o, p in pod_specs(DEPLOYED)
                            if container(p)["args"] == ["consumer", ns.name]]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        group_mounts = {m["mountPath"]: m["name"] for m in container(group_pod)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        group_volumes = {v["name"]: v for v in group_pod["volumes"]}
        for path, name in group_mounts.items():
            if {"configMap", "secret"} & set(group_volumes.get(name, {})):  # not the PVC
                assert volumes[mounts[path]] == group_volumes[name], path
        env = {e["name"]: e.get("value") for e in c["env"]}
        group_env = {e["name"]: e.get("value") for e in container(group_pod)["env"]}
        assert {k: v for k, v in group_env.items() if k.endswith("CONFIG")} == env
        for name, v in volumes.items():
            if "secret" in v:
                secret = v["secret"]["secretName"]
                assert secret in STRIMZI_SECRETS or secret in EXAMPLE_SECRETS, name
        assert pod["securityContext"]["runAsNonRoot"] is True
