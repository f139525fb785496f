#!/usr/bin/env bash
# Check 1: deploy/kubernetes renders with `kubectl kustomize` (as is, and with
# each optional component and a changed release label), and every rendered
# manifest validates offline against the pinned Kubernetes schema; the
# DaemonSet and the etcd StatefulSet pass check_manifests.py, which is shown
# to catch each broken property; the DaemonSet's start command picks the
# node's config and pod CIDR; the PrometheusRule is in sync with
# deploy/prometheus/phantommesh-rules.yml.
source "$(dirname "$0")/lib.sh"
need_kubectl
PY=$(venv_python)
work=$(mktemp -d /tmp/pm-manifests.XXXXXX)
add_cleanup "rm -rf '$work'"
K=$REPO_ROOT/deploy/kubernetes

log "kubectl kustomize deploy/kubernetes (base)"
kubectl kustomize "$K" >"$work/base.yaml" || fail "base does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/base.yaml" \
    --expect-release kube-prometheus-stack \
    --expect-kind Namespace --expect-kind ServiceAccount --expect-kind ConfigMap --expect-kind DaemonSet \
    --expect-kind Service --expect-kind PodMonitor --expect-kind PrometheusRule --absent-kind ServiceMonitor \
    --absent-kind StatefulSet --absent-kind Secret || fail "base manifests invalid"

# An operator's copy: another release label, the ServiceMonitor instead of the
# PodMonitor.
log "variant: release=my-prometheus, ServiceMonitor"
cp -r "$K" "$work/variant"
sed -i 's/value: kube-prometheus-stack/value: my-prometheus/' "$work/variant/kustomization.yaml"
cat >>"$work/variant/kustomization.yaml" <<'YAML'
components:
  - optional/servicemonitor
YAML
kubectl kustomize "$work/variant" >"$work/variant.yaml" || fail "variant does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/variant.yaml" \
    --expect-release my-prometheus --expect-kind ServiceMonitor --expect-kind PrometheusRule \
    --absent-kind PodMonitor || fail "variant manifests invalid"

log "variant: privileged fallback"
cp -r "$K" "$work/privileged"
printf 'components:\n  - optional/privileged\n' >>"$work/privileged/kustomization.yaml"
kubectl kustomize "$work/privileged" >"$work/privileged.yaml" || fail "privileged variant does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/privileged.yaml" \
    --expect-release kube-prometheus-stack || fail "privileged manifests invalid"
grep -q 'privileged: true' "$work/privileged.yaml" || fail "privileged component did not apply"

log "variant: optional/etcd"
cp -r "$K" "$work/etcd"
printf 'components:\n  - optional/etcd\n' >>"$work/etcd/kustomization.yaml"
kubectl kustomize "$work/etcd" >"$work/etcd.yaml" || fail "etcd variant does not render"
"$PY" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" "$work/etcd.yaml" \
    --expect-release kube-prometheus-stack --expect-kind StatefulSet --expect-kind PodDisruptionBudget \
    --expect-kind DaemonSet --absent-kind Secret || fail "etcd variant manifests invalid"
# The daemons' endpoints are the component's members.
"$PY" - "$work/etcd.yaml" <<'PYEOF' || fail "[mesh].endpoints do not name the etcd members"
import sys, tomllib, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
eps = tomllib.loads(cm["data"]["phantommesh.toml"])["mesh"]["endpoints"]
sts = next(d for d in docs if d["kind"] == "StatefulSet")
ns = sts["metadata"]["namespace"]
svc = sts["spec"]["serviceName"]
want = [f"https://{sts['metadata']['name']}-{i}.{svc}.{ns}.svc:2379" for i in range(sts["spec"]["replicas"])]
assert eps == want, f"{eps} != {want}"
print("  ok: [mesh].endpoints are the", len(want), "etcd members")
PYEOF

# The checks must catch what they guard: each mutation of the rendered
# manifests fails check_manifests.py with its message.
log "check_manifests.py catches each broken property"
"$PY" - "$work/etcd.yaml" "$work" "$DEPLOY_TESTS_DIR/check_manifests.py" "$K8S_SCHEMA_VERSION" <<'PYEOF' \
    || fail "a mutation was not caught"
import copy, subprocess, sys, yaml
src, work, checker, version = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(src)) if d]

def kind(ds, k):
    return next(d for d in ds if d["kind"] == k)

def ctr(ds):
    return kind(ds, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]

def env(ds, name):
    return next(e for e in ctr(ds)["env"] if e["name"] == name)

def mount(ds, name):
    return next(m for m in ctr(ds)["volumeMounts"] if m["name"] == name)

def vol(ds, name):
    return next(v for v in kind(ds, "DaemonSet")["spec"]["template"]["spec"]["volumes"] if v["name"] == name)

def cm_toml(ds, f):
    c = kind(ds, "ConfigMap")
    c["data"]["phantommesh.toml"] = f(c["data"]["phantommesh.toml"])

def sts(ds):
    return kind(ds, "StatefulSet")["spec"]

def add_key_secret(ds):
    kind(ds, "DaemonSet")["spec"]["template"]["spec"]["volumes"].append(
        {"name": "keys", "secret": {"secretName": "phantommesh-keys"}})
    ctr(ds)["volumeMounts"].append({"name": "keys", "mountPath": "/etc/phantommesh-keys", "readOnly": True})
    ctr(ds)["env"].append({"name": "PHANTOMMESH_PRIVATE_KEY_FILE", "value": "/etc/phantommesh-keys/$(PHANTOMMESH_NODE_NAME)"})

mutations = {
    "node name not from the downward API":
        (lambda ds: ctr(ds)["env"].__setitem__(
            ctr(ds)["env"].index(env(ds, "PHANTOMMESH_NODE_NAME")), {"name": "PHANTOMMESH_NODE_NAME", "value": "node-a"}),
         "PHANTOMMESH_NODE_NAME must come from fieldRef spec.nodeName"),
    "host IP from the pod name":
        (lambda ds: env(ds, "HOST_IP")["valueFrom"]["fieldRef"].update(fieldPath="metadata.name"),
         "PHANTOMMESH_ADVERTISE_ENDPOINT must be the node IP"),
    "config mounted with subPath":
        (lambda ds: mount(ds, "config").update(subPath="phantommesh.toml", mountPath="/etc/phantommesh/phantommesh.toml"),
         "mounted with subPath"),
    "hash suffix on the ConfigMap":
        (lambda ds: (vol(ds, "config")["configMap"].update(name="phantommesh-config-5f8b2h"),
                     kind(ds, "ConfigMap")["metadata"].update(name="phantommesh-config-5f8b2h")),
         "disableNameSuffixHash"),
    "private keys from a Secret": (add_key_secret, "are expected (no keys in Secrets)"),
    "no admin token":
        (lambda ds: ctr(ds)["env"].remove(env(ds, "PHANTOMMESH_ADMIN_TOKEN_FILE")),
         "PHANTOMMESH_ADMIN_TOKEN_FILE must name the admin token file"),
    "admin token not mounted":
        (lambda ds: ctr(ds)["volumeMounts"].remove(mount(ds, "admin-token")),
         "is not key 'token' of a mounted Secret"),
    "admin token writable":
        (lambda ds: mount(ds, "admin-token").update(readOnly=False), "admin token must be mounted readOnly"),
    "admin API unauthenticated":
        (lambda ds: ctr(ds)["env"].append({"name": "PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED", "value": "1"}),
         "must not be unauthenticated"),
    "PodMonitor without the token":
        (lambda ds: kind(ds, "PodMonitor")["spec"]["podMetricsEndpoints"][0].pop("authorization"),
         "endpoint must send the admin token"),
    "etcd client Secret writable":
        (lambda ds: mount(ds, "etcd-client").update(readOnly=False), "etcd client Secret must be mounted readOnly"),
    "etcd client Secret inside the config volume":
        (lambda ds: (mount(ds, "etcd-client").update(mountPath="/etc/phantommesh/etcd"),
                     cm_toml(ds, lambda t: t.replace("/etc/phantommesh-etcd/", "/etc/phantommesh/etcd/"))),
         "is mounted inside the config volume"),
    "shared tunnel address back":
        (lambda ds: cm_toml(ds, lambda t: t.replace("[interface]\n", '[interface]\naddresses = ["10.100.0.1/24"]\n')),
         "gives every node the same address"),
    "no [mesh] section":
        (lambda ds: cm_toml(ds, lambda t: t.replace("[mesh]", "[unused]").replace("store = ", "# ")),
         "has no [mesh] section"),
    "key file off the node":
        (lambda ds: cm_toml(ds, lambda t: t.replace('"/var/lib/phantommesh/private.key"', '"/etc/phantommesh-etcd/private.key"')),
         "is not on a hostPath"),
    "TLS key outside the Secret":
        (lambda ds: cm_toml(ds, lambda t: t.replace('"/etc/phantommesh-etcd/tls.key"', '"/etc/ssl/tls.key"')),
         "is not in the mounted 'phantommesh-etcd-client' Secret"),
    "a Secret rendered":
        (lambda ds: ds.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "phantommesh"},
                               "stringData": {"k": "v"}}), "create Secrets with kubectl"),
    "etcd without peer client auth":
        (lambda ds: sts(ds)["template"]["spec"]["containers"][0]["args"].remove("--peer-client-cert-auth=true"),
         "argument --peer-client-cert-auth=true... missing"),
    "etcd without anti-affinity":
        (lambda ds: sts(ds)["template"]["spec"].pop("affinity"), "required pod anti-affinity"),
    "etcd OrderedReady":
        (lambda ds: sts(ds).update(podManagementPolicy="OrderedReady"), "podManagementPolicy Parallel"),
    "no PodDisruptionBudget":
        (lambda ds: ds.remove(kind(ds, "PodDisruptionBudget")), "no PodDisruptionBudget"),
    "no SETUID for the privilege drop":
        (lambda ds: ctr(ds)["securityContext"]["capabilities"]["add"].remove("SETUID"),
         "needs SETUID and SETGID"),
    "group-readable etcd Secret without fsGroup 65534":
        (lambda ds: kind(ds, "DaemonSet")["spec"]["template"]["spec"].pop("securityContext"),
         "through fsGroup 65534"),
    "etcd data on emptyDir":
        (lambda ds: (sts(ds).pop("volumeClaimTemplates"),
                     sts(ds)["template"]["spec"]["volumes"].append({"name": "data", "emptyDir": {}})),
         "/var/lib/etcd must be a volumeClaimTemplate"),
}
bad = 0
for label, (mutate, want) in mutations.items():
    ds = copy.deepcopy(docs)
    mutate(ds)
    path = f"{work}/mutated.yaml"
    yaml.safe_dump_all(ds, open(path, "w"))
    r = subprocess.run([sys.executable, checker, version, path], capture_output=True, text=True)
    if r.returncode == 0 or want not in r.stdout:
        print(f"  NOT CAUGHT: {label} (want {want!r}):\n{r.stdout}{r.stderr}")
        bad += 1
    else:
        print(f"  ok: caught {label}")
sys.exit(1 if bad else 0)
PYEOF

log "the DaemonSet's start command: config file and pod CIDR per node"
"$PY" - "$work/base.yaml" "$work" <<'PYEOF' || fail "start command"
import os, subprocess, sys, yaml
src, work = sys.argv[1:]
ds = next(d for d in yaml.safe_load_all(open(src)) if d and d["kind"] == "DaemonSet")
c = ds["spec"]["template"]["spec"]["containers"][0]
assert c["command"] == ["/bin/sh", "-c"], c["command"]
script = c["args"][0]
etc = f"{work}/etc-phantommesh"
os.makedirs(etc, exist_ok=True)
# The ConfigMap's directory, and a stand-in daemon that prints what it got.
fake = f"{work}/fake-phantommesh"
with open(fake, "w") as f:
    f.write('#!/bin/sh\necho "args=$*"\necho "allowed=${PHANTOMMESH_MESH_ALLOWED_IPS:-}"\n')
os.chmod(fake, 0o755)
for name in ("phantommesh.toml", "node-node-b.toml"):
    open(f"{etc}/{name}", "w").write("")
with open(f"{etc}/pod-cidrs", "w") as f:
    f.write("# comment\nnode-a 10.244.1.0/24\nnode-b 10.244.2.0/24,fd00:10:244:2::/64\n")
script = script.replace("/etc/phantommesh/", etc + "/").replace("/usr/local/bin/phantommesh", fake)
assert "/etc/phantommesh" not in script.replace(etc, "")

def run(node, allowed=""):
    env = {"PATH": "/usr/bin:/bin", "PHANTOMMESH_NODE_NAME": node, "PHANTOMMESH_MESH_ALLOWED_IPS": allowed}
    out = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())

r = run("node-a")
assert r["args"] == f"run --config {etc}/phantommesh.toml --log-format json", r
assert r["allowed"] == "10.244.1.0/24", r
r = run("node-b")
assert r["args"] == f"run --config {etc}/node-node-b.toml --log-format json", r
assert r["allowed"] == "10.244.2.0/24,fd00:10:244:2::/64", r
r = run("node-c")
assert r["allowed"] == "", r
r = run("node-a", allowed="10.9.0.0/24")
assert r["allowed"] == "10.9.0.0/24", "an explicit env must win over pod-cidrs"
os.remove(f"{etc}/pod-cidrs")
assert run("node-a")["allowed"] == ""
print("  ok: node file and pod CIDR picked per node; explicit env wins; no pod-cidrs file is fine")
PYEOF

# Check 3 runs the real daemon on these files; here, the keys the DaemonSet
# relies on.
"$PY" - "$K/config/phantommesh.toml" "$K/config/gates.toml" <<'PYEOF' || fail "ConfigMap TOML files"
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
assert cfg["interface"]["private_key_file"].startswith("/var/lib/phantommesh/"), "key must live on the state hostPath"
assert "addresses" not in cfg["interface"], "no shared tunnel address: the mesh allocates one per node"
assert cfg["mesh"]["store"] == "etcd" and cfg["mesh"]["network"], cfg["mesh"]
gates = tomllib.load(open(sys.argv[2], "rb"))
names = [g["name"] for g in gates["gate"]]
assert names == ["performance", "technical", "mesh"], names
print("  ok: ConfigMap TOML parses; gates", names)
PYEOF

log "PrometheusRule in sync with phantommesh-rules.yml"
sh "$REPO_ROOT/deploy/prometheus/sync-prometheusrule.sh" --check || fail "PrometheusRule is stale"
# Same rules, parsed: the generated file's spec equals the rules file.
"$PY" - "$REPO_ROOT/deploy/prometheus/phantommesh-rules.yml" "$K/prometheusrule.yaml" <<'PYEOF' || fail "PrometheusRule differs"
import sys, yaml
a = yaml.safe_load(open(sys.argv[1]))
b = yaml.safe_load(open(sys.argv[2]))["spec"]
assert a == b, "spec.groups differs from the rules file"
print("  ok: PrometheusRule spec == rules file,", sum(len(g["rules"]) for g in a["groups"]), "rules")
PYEOF
log "PASS"
