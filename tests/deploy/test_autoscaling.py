"""deploy/k8s autoscaling, offline: every workload that joins a Kafka consumer group is scaled
by a KEDA ScaledObject on the lag of exactly its group and its topics (recomputed here from the
code and ``contracts``, independently of deploy/gen.py), never beyond the partitions of those
topics nor beyond what its store allows; the receiver by an HPA on CPU."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.registry import CONFIG_ENV, load_consumer
from contracts.topics import PROJECTOR, Topics
from parley.cli import build_parser
from tests.kit.manifests import (
    K8S,
    Obj,
    container,
    env_of,
    gen,
    generated_matches,
    k8s_objects,
    labels_match,
    of_kind,
    one,
    pod_specs,
    validate_custom,
)

OBJECTS = k8s_objects()
DEPLOYED = k8s_objects(include_examples=False)
GEN = gen()
SETTINGS = GEN.k8s_settings()
KAFKA = SETTINGS.kafka
TOPICS = Topics(prefix=KAFKA.topic_prefix)
CLUSTER = one(DEPLOYED, "Kafka").name
SCALED = of_kind(DEPLOYED, "ScaledObject")
# The Kafka scaler's trigger metadata is a free-form map in the CRD; these are the parameters
# KEDA documents for it (deploy/crds/README.md).
KEDA_KAFKA_KEYS = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold",
                   "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
                   "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
                   "partitionLimitation", "version", "sasl", "tls", "unsafeSsl"}


def group_members() -> list[Obj]:
    """Workloads whose pods join a consumer group: `parley projector` / `parley consumer NAME`."""
    return [o for o, pod in pod_specs(DEPLOYED) if container(pod)["args"][0] in ("projector",
                                                                                "consumer")]


def expected_group_and_topics(workload: Obj, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path) -> tuple[str, list[str]]:
    """What the code makes of this pod's command: its consumer group and subscribed topics."""
    pod = workload.body["spec"]["template"]["spec"]
    c = container(pod)
    ns = build_parser().parse_args(c["args"])
    if ns.command == "projector":  # projector/runner.py subscribes to every event topic
        return ns.group or TOPICS.group_id(PROJECTOR), list(TOPICS.event_topics)
    # Build the consumer as its pod does: the [consumers.NAME] file from the (example, filled
    # in) Secret at $PARLEY_CONSUMERS_CONFIG.
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    env = env_of(c)
    if CONFIG_ENV in env:
        mounted = Path(env[CONFIG_ENV]["value"])
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        [volume] = [v for v in pod["volumes"] if v["name"] == mounts[str(mounted.parent)]]
        [item] = [i for i in volume["secret"]["items"] if i["path"] == mounted.name]
        secret = one(OBJECTS, "Secret", volume["secret"]["secretName"]).body
        local = tmp_path / mounted.name
        # As the operator fills the Secret in: the example's placeholder stops a consumer.
        local.write_text(secret["stringData"][item["key"]].replace(
            "replace-with-the-crm-api-key", "7d1f0c2e9a4b6f3e8a5d"))
        monkeypatch.setenv(CONFIG_ENV, str(local))
    consumer = load_consumer(ns.name, SETTINGS)
    return (Topics(prefix=KAFKA.topic_prefix).group_id(consumer.name),
            list(consumer.topic_names(TOPICS)))


def scaled_object_of(workload: Obj) -> Obj:
    found = [so for so in SCALED if so.body["spec"]["scaleTargetRef"]["name"] == workload.name
             and so.body["spec"]["scaleTargetRef"]["kind"] == workload.kind]
    assert len(found) == 1, f"{workload.id} needs exactly one ScaledObject, has {len(found)}"
    return found[0]


def partitions_of(topic: str) -> int:
    """From the KafkaTopic objects, which test_k8s checks against contracts' specs."""
    [t] = [t for t in of_kind(DEPLOYED, "KafkaTopic") if t.body["spec"]["topicName"] == topic]
    return int(t.body["spec"]["partitions"])


# ------------------------------------------------------------------------- generated
def test_autoscaling_yaml_is_generated() -> None:
    assert generated_matches(K8S / "autoscaling.yaml", GEN.render_autoscaling()), \
        "deploy/k8s/autoscaling.yaml is out of date: run `python -m deploy.gen`"


def test_generator_check_mode_reports_a_stale_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "autoscaling.yaml"
    stale.write_text(GEN.render_autoscaling().replace("maxReplicaCount: 1", "maxReplicaCount: 13"))
    monkeypatch.setattr(GEN, "AUTOSCALING_FILE", stale)
    assert GEN.main(["--check"]) == 1
    monkeypatch.setattr(GEN, "AUTOSCALING_FILE", K8S / "autoscaling.yaml")
    assert GEN.main(["--check"]) == 0


# ------------------------------------------------------------------------ membership
def test_there_are_group_members_to_scale() -> None:
    names = {o.name for o in group_members()}
    assert {"parley-projector", "parley-consumer-search", "parley-consumer-crm"} <= names


@pytest.mark.parametrize("workload", group_members(), ids=lambda o: o.id)
def test_group_member_scales_on_the_lag_of_its_own_group_and_topics(
        workload: Obj, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    group, topics = expected_group_and_topics(workload, monkeypatch, tmp_path)
    so = scaled_object_of(workload).body
    ref = so["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"]) == (workload.body["apiVersion"], "StatefulSet")
    triggers = so["spec"]["triggers"]
    assert all(t["type"] == "kafka" for t in triggers)
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {group}
    # One trigger per topic: explicit topics, so a group with no commits yet still has lag.
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(topics)
    for t in triggers:
        meta = t["metadata"]
        assert set(meta) <= KEDA_KAFKA_KEYS
        assert meta["bootstrapServers"] == KAFKA.bootstrap
        assert meta["offsetResetPolicy"] == "earliest"  # what make_consumer starts a group at
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0


def test_every_scaled_object_targets_a_group_member() -> None:
    members = {(o.kind, o.name) for o in group_members()}
    hpa_targets = {(h.body["spec"]["scaleTargetRef"]["kind"], h.body["spec"]["scaleTargetRef"]["name"])
                   for h in of_kind(DEPLOYED, "HorizontalPodAutoscaler")}
    assert SCALED
    for so in SCALED:
        ref = so.body["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in members, so.id
        assert (ref["kind"], ref["name"]) not in hpa_targets, f"{so.id}: KEDA owns that HPA"


# -------------------------------------------------------------------------- replicas
@pytest.mark.parametrize("so", SCALED, ids=lambda o: o.id)
def test_max_replicas_never_exceed_the_partitions_the_group_reads(so: Obj) -> None:
    spec = so.body["spec"]
    topics = [t["metadata"]["topic"] for t in spec["triggers"]]
    specs = {s.name: s.partitions for s in TOPICS.specs(KAFKA.partitions)}  # contracts
    assert 1 <= spec["maxReplicaCount"] <= min(partitions_of(t) for t in topics)
    assert spec["maxReplicaCount"] <= min(specs[t] for t in topics)
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


@pytest.mark.parametrize("so", SCALED, ids=lambda o: o.id)
def test_replicas_fit_the_state_and_the_services(so: Obj) -> None:
    spec = so.body["spec"]
    target = one(DEPLOYED, spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])
    args = container(target.body["spec"]["template"]["spec"])["args"]
    sqlite = SETTINGS.store.url.startswith("sqlite:")
    # SQLite files cannot be shared between pods: the projector's store, the search index (in
    # the store's database with PostgreSQL, a file with SQLite) and crm.db (always a file).
    if args == ["consumer", "crm"] or (sqlite and args in (["projector"], ["consumer", "search"])):
        assert spec["maxReplicaCount"] == 1
    labels = target.body["spec"]["template"]["metadata"]["labels"]
    serving = [s for s in of_kind(DEPLOYED, "Service") if s.body["spec"].get("clusterIP") != "None"
               and labels_match(s.body["spec"]["selector"], labels)]
    if serving:  # it answers queries: never scaled to zero
        assert spec["minReplicaCount"] >= 1, [s.name for s in serving]
    else:  # nothing waits on it: to zero after a quiet cooldown, back when records arrive
        assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] >= 60
        assert all(t["metadata"]["activationLagThreshold"] == "0" for t in spec["triggers"])


def test_a_postgresql_store_lifts_the_store_bound_to_the_partitions(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    config = k8s / "config.yaml"
    text = config.read_text()
    assert 'url = "sqlite:////var/lib/parley/state.db"' in text
    config.write_text(text.replace('url = "sqlite:////var/lib/parley/state.db"',
                                   'url = "postgresql://parley@db:5432/parley?schema=parley"'))
    maxima = {o["metadata"]["name"]: o["spec"]["maxReplicaCount"]
              for _, o in GEN.autoscaling_resources(k8s) if o["kind"] == "ScaledObject"}
    assert maxima == {"parley-projector": KAFKA.partitions,
                      "parley-consumer-search": KAFKA.partitions,
                      "parley-consumer-crm": 1}  # crm.db stays a file on the pod's volume


def test_a_store_url_from_a_secret_counts_as_postgresql(tmp_path: Path) -> None:
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    projector = k8s / "projector.yaml"
    anchor = "            - name: PARLEY_HTTP__API_TOKENS\n"
    text = projector.read_text()
    assert text.count(anchor) == 1
    projector.write_text(text.replace(anchor, (
        "            - name: PARLEY_STORE__URL\n"
        "              valueFrom:\n"
        "                secretKeyRef: {name: parley-store, key: url}\n") + anchor))
    maxima = {o["metadata"]["name"]: o["spec"]["maxReplicaCount"]
              for _, o in GEN.autoscaling_resources(k8s) if o["kind"] == "ScaledObject"}
    # Only the pod that gets the URL: search still runs on the ConfigMap's SQLite.
    assert maxima == {"parley-projector": KAFKA.partitions, "parley-consumer-search": 1,
                      "parley-consumer-crm": 1}


def test_a_consumer_without_local_state_scales_to_the_partition_count() -> None:
    [crm] = [w for w in GEN.group_workloads() if w.role == "crm"]
    partitions = {s.name: s.partitions for s in TOPICS.specs(KAFKA.partitions)}
    assert GEN.replica_limit(crm, partitions)[0] == 1
    stateless = GEN.GroupWorkload(**{**crm.__dict__, "role": "welcome"})
    assert GEN.replica_limit(stateless, partitions)[0] == KAFKA.partitions
    with pytest.raises(LookupError, match="not topics in contracts"):
        GEN.replica_limit(GEN.GroupWorkload(**{**crm.__dict__, "topics": ("elsewhere",)}),
                          partitions)


def test_autoscaled_workloads_leave_replicas_to_their_autoscaler() -> None:
    targets = [so.body["spec"]["scaleTargetRef"] for so in SCALED]
    targets += [h.body["spec"]["scaleTargetRef"] for h in of_kind(DEPLOYED, "HorizontalPodAutoscaler")]
    for ref in targets:
        workload = one(DEPLOYED, ref["kind"], ref["name"])
        assert "replicas" not in workload.body["spec"], \
            f"{workload.id}: a re-apply would undo the autoscaler's replica count"


def test_every_workload_is_autoscaled_and_the_receiver_on_cpu() -> None:
    scaled = {(so.body["spec"]["scaleTargetRef"]["kind"], so.body["spec"]["scaleTargetRef"]["name"])
              for so in SCALED}
    for hpa in of_kind(DEPLOYED, "HorizontalPodAutoscaler"):
        ref = hpa.body["spec"]["scaleTargetRef"]
        target = one(DEPLOYED, ref["kind"], ref["name"])
        assert container(target.body["spec"]["template"]["spec"])["args"] == ["receiver"]
        assert [m["resource"]["name"] for m in hpa.body["spec"]["metrics"]] == ["cpu"]
        scaled.add((ref["kind"], ref["name"]))
    assert scaled == {(o.kind, o.name) for o, _ in pod_specs(DEPLOYED)}


# ---------------------------------------------------------------------- credentials
@pytest.mark.parametrize("so", SCALED, ids=lambda o: o.id)
def test_scaler_talks_to_kafka_like_parley_does(so: Obj) -> None:
    sec = KAFKA.security
    assert (sec.protocol, sec.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    ref = so.body["spec"]["scaleTargetRef"]
    c = container(one(DEPLOYED, ref["kind"], ref["name"]).body["spec"]["template"]["spec"])
    for trigger in so.body["spec"]["triggers"]:
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")
        auth = one(DEPLOYED, "TriggerAuthentication", trigger["authenticationRef"]["name"]).body
        secrets = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        assert secrets == {"password": (sec.sasl_username, "password"),
                           "ca": (f"{CLUSTER}-cluster-ca-cert", "ca.crt")}
        [user] = [e for e in auth["spec"]["env"] if e["parameter"] == "username"]
        assert user["containerName"] == c["name"]
        assert env_of(c)[user["name"]]["value"] == sec.sasl_username


# --------------------------------------------------------------------------- schema
@pytest.mark.parametrize("obj", [o for o in DEPLOYED if o.body["apiVersion"].startswith("keda.sh/")],
                         ids=lambda o: o.id)
def test_keda_objects_match_their_crd_schema(obj: Obj) -> None:
    assert validate_custom(obj.body) == []


def test_keda_schema_check_can_fail() -> None:
    so = copy.deepcopy(one(DEPLOYED, "ScaledObject", "parley-projector").body)
    so["spec"]["maxReplicaCount"] = "twelve"
    assert validate_custom(so)
    so = copy.deepcopy(one(DEPLOYED, "ScaledObject", "parley-projector").body)
    so["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5000  # the CRD wants strings
    assert validate_custom(so)
    so = copy.deepcopy(one(DEPLOYED, "ScaledObject", "parley-projector").body)
    so["spec"]["advanced"]["restoreToOriginal"] = True  # misspelt
    assert validate_custom(so)


def test_generated_file_is_plain_yaml_with_its_objects_only() -> None:
    docs = [d for d in yaml.safe_load_all((K8S / "autoscaling.yaml").read_text()) if d]
    kinds: list[Any] = sorted(d["kind"] for d in docs)
    assert kinds == ["ScaledObject"] * len(SCALED) + ["TriggerAuthentication"]
