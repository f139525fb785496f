"""Validates rendered Kubernetes manifests (multi-document YAML files).

Usage: check_manifests.py K8S_VERSION RENDERED.yaml [--expect-release LABEL]
       [--expect-kind KIND]... [--absent-kind KIND]...

Core kinds are validated offline against the Kubernetes JSON schemas that ship
inside kubernetes-validate (strict: unknown fields are errors). Prometheus
Operator kinds have no schema there: they are checked for shape and for the
fields Prometheus needs. The DaemonSet is checked against the conventions of
a node networking DaemonSet (REFERENCE section 7) and the mesh's needs: its
identity from the downward API, the config mounted so the kubelet updates it
in place (no subPath, no hash suffix), no private key from a Secret, the etcd
client certificate mounted read-only where the config looks for it. An etcd
StatefulSet (optional/etcd), when rendered, is checked for TLS, quorum
safety (anti-affinity, PodDisruptionBudget) and storage.
"""
import argparse
import posixpath
import sys
import tomllib

import kubernetes_validate
from kubernetes_validate import utils as kvu
import yaml

CRD_GROUP = "monitoring.coreos.com/v1"
CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
CONFIG_MAP = "phantommesh-config"
ETCD_CLIENT_SECRET = "phantommesh-etcd-client"
ADMIN_TOKEN_SECRET = "phantommesh-admin-token"
ADMIN_TOKEN_KEY = "token"

errors = []


def err(msg):
    errors.append(msg)


def check(cond, msg):
    if not cond:
        err(msg)
    return cond


def validate_core(doc, version):
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kvu.ValidationError as e:
        path = "/".join(str(p) for p in getattr(e, "absolute_path", []))
        err(f"{name}: schema {version}: {getattr(e, 'message', e)} at {path or '(root)'}")
    except kvu.SchemaNotFoundError:
        err(f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")
    except kvu.InvalidSchemaError as e:
        err(f"{name}: invalid schema: {e.message}")
    except kvu.VersionNotSupportedError as e:
        err(e.message)


def check_crd(doc, release):
    kind = doc["kind"]
    meta = doc.get("metadata") or {}
    name = f"{kind}/{meta.get('name')}"
    check(doc.get("apiVersion") == CRD_GROUP, f"{name}: apiVersion must be {CRD_GROUP}")
    check(meta.get("namespace"), f"{name}: no namespace")
    labels = meta.get("labels") or {}
    if release is not None:
        check(labels.get("release") == release, f"{name}: release label {labels.get('release')!r}, want {release!r}")
    spec = doc.get("spec")
    if not check(isinstance(spec, dict), f"{name}: spec missing"):
        return
    if kind in ("PodMonitor", "ServiceMonitor"):
        check((spec.get("selector") or {}).get("matchLabels"), f"{name}: no selector.matchLabels")
        eps = spec.get("podMetricsEndpoints" if kind == "PodMonitor" else "endpoints") or []
        check(len(eps) >= 1, f"{name}: no endpoints")
        for ep in eps:
            check(ep.get("port") == "metrics", f"{name}: endpoint port {ep.get('port')!r}, want 'metrics'")
            check(ep.get("path") == "/metrics", f"{name}: endpoint path {ep.get('path')!r}")
            targets = [r.get("targetLabel") for r in ep.get("relabelings") or []]
            check("node" in targets, f"{name}: no relabeling to the 'node' label")
            # /metrics on the node IP needs the admin token.
            auth = ep.get("authorization") or {}
            cred = auth.get("credentials") or {}
            check(auth.get("type", "Bearer") == "Bearer"
                  and cred.get("name") == ADMIN_TOKEN_SECRET and cred.get("key") == ADMIN_TOKEN_KEY,
                  f"{name}: endpoint must send the admin token (authorization: Bearer from Secret "
                  f"{ADMIN_TOKEN_SECRET}/{ADMIN_TOKEN_KEY})")
    else:
        groups = spec.get("groups") or []
        check(groups, f"{name}: no rule groups")
        for g in groups:
            check(g.get("name") and g.get("rules"), f"{name}: group without name or rules")
            for r in g.get("rules") or []:
                check(("alert" in r) != ("record" in r), f"{name}: rule needs exactly one of alert/record: {r}")
                check(isinstance(r.get("expr"), str) and r["expr"].strip(), f"{name}: rule without expr: {r}")
                if "alert" in r:
                    ann = r.get("annotations") or {}
                    for key in ("summary", "description", "runbook_url"):
                        check(ann.get(key), f"{name}: alert {r['alert']} has no {key}")
                    check((r.get("labels") or {}).get("severity") in ("warning", "critical"),
                          f"{name}: alert {r['alert']} has no warning/critical severity")


def check_daemonset(ds, docs):
    name = "DaemonSet/" + ds["metadata"]["name"]
    spec = ds["spec"]
    upd = spec.get("updateStrategy") or {}
    check(upd.get("type") == "RollingUpdate", f"{name}: updateStrategy must be RollingUpdate")
    check((upd.get("rollingUpdate") or {}).get("maxUnavailable") == 1, f"{name}: maxUnavailable must be 1")
    pod = spec["template"]["spec"]
    check(pod.get("hostNetwork") is True, f"{name}: hostNetwork must be true")
    check(pod.get("priorityClassName") == "system-node-critical", f"{name}: priorityClassName")
    check({"operator": "Exists"} in (pod.get("tolerations") or []), f"{name}: needs a toleration operator: Exists")
    check((pod.get("terminationGracePeriodSeconds") or 0) > 0, f"{name}: terminationGracePeriodSeconds")
    check(pod.get("automountServiceAccountToken") is False, f"{name}: the daemon needs no API token")
    c = pod["containers"][0]
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    privileged = sc.get("privileged") is True
    if not privileged:
        check(caps.get("drop") == ["ALL"], f"{name}: capabilities.drop must be [ALL]")
        add = set(caps.get("add") or [])
        check(add <= {"NET_ADMIN", "NET_RAW", "SETUID", "SETGID", "SETPCAP", "DAC_READ_SEARCH"} and "NET_ADMIN" in add,
              f"{name}: capabilities.add must be NET_ADMIN (+ NET_RAW, and SETUID SETGID SETPCAP for the privilege drop, DAC_READ_SEARCH for the root-owned key)")
        # The daemon drops to 65534 after set-up; without both it logs an
        # error and runs on as root.
        check({"SETUID", "SETGID"} <= add, f"{name}: capabilities.add needs SETUID and SETGID (privilege drop)")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false")
    check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
    ports = {p.get("name"): p for p in c.get("ports") or []}
    check("metrics" in ports and ports["metrics"].get("containerPort") == 9586, f"{name}: named port metrics 9586")
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        p = (c.get(probe) or {}).get("httpGet") or {}
        check(p.get("path") == path and p.get("port") == "metrics", f"{name}: {probe} must GET {path} on metrics")
    res = c.get("resources") or {}
    for k in ("requests", "limits"):
        check(set((res.get(k) or {}).keys()) >= {"cpu", "memory"}, f"{name}: resources.{k} cpu and memory")
    env_list = c.get("env") or []
    env = {e["name"]: e for e in env_list}
    order = [e["name"] for e in env_list]

    def field(n):
        return (((env.get(n) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")

    def defined_before(var, user):
        # $(VAR) expands only to a variable defined earlier in the list.
        return var in order and user in order and order.index(var) < order.index(user)

    check(field("POD_IP") == "status.podIP", f"{name}: POD_IP from the downward API")
    check((env.get("PHANTOMMESH_ADMIN_LISTEN") or {}).get("value") == "$(POD_IP):9586"
          and defined_before("POD_IP", "PHANTOMMESH_ADMIN_LISTEN"),
          f"{name}: PHANTOMMESH_ADMIN_LISTEN must be $(POD_IP):9586, after POD_IP")
    # Off loopback the daemon refuses to serve its admin API without a token.
    token_file = (env.get("PHANTOMMESH_ADMIN_TOKEN_FILE") or {}).get("value") or ""
    check(token_file.startswith("/"), f"{name}: PHANTOMMESH_ADMIN_TOKEN_FILE must name the admin token file")
    check((env.get("PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED") or {}).get("value") in (None, "", "0"),
          f"{name}: the admin API on the node IP must not be unauthenticated")
    # Mesh identity: the node name and the node IP, from the downward API.
    check(field("PHANTOMMESH_NODE_NAME") == "spec.nodeName",
          f"{name}: PHANTOMMESH_NODE_NAME must come from fieldRef spec.nodeName")
    adv = env.get("PHANTOMMESH_ADVERTISE_ENDPOINT") or {}
    check(field("PHANTOMMESH_ADVERTISE_ENDPOINT") == "status.hostIP"
          or (adv.get("value") in ("$(HOST_IP)", "$(HOST_IP):51820")
              and field("HOST_IP") == "status.hostIP"
              and defined_before("HOST_IP", "PHANTOMMESH_ADVERTISE_ENDPOINT")),
          f"{name}: PHANTOMMESH_ADVERTISE_ENDPOINT must be the node IP (status.hostIP, or $(HOST_IP) after HOST_IP)")
    allowed = env.get("PHANTOMMESH_MESH_ALLOWED_IPS")
    check(allowed is None or "valueFrom" not in allowed,
          f"{name}: PHANTOMMESH_MESH_ALLOWED_IPS cannot come from the downward API (no spec.podCIDR there)")
    check("PHANTOMMESH_PRIVATE_KEY_FILE" not in env,
          f"{name}: PHANTOMMESH_PRIVATE_KEY_FILE set: the key must stay where the config generates it, on the node")
    cmdline = " ".join((c.get("command") or []) + (c.get("args") or []))
    check("--log-format json" in cmdline and " run " in f" {cmdline} ", f"{name}: must run with --log-format json")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    mount_list = c.get("volumeMounts") or []
    mounts = {m["mountPath"]: m["name"] for m in mount_list}
    tun = vols.get(mounts.get("/dev/net/tun"), {}).get("hostPath") or {}
    check(tun.get("path") == "/dev/net/tun" and tun.get("type") == "CharDevice", f"{name}: /dev/net/tun CharDevice hostPath")
    wg = vols.get(mounts.get("/var/run/wireguard"), {}).get("hostPath") or {}
    check(wg.get("path") == "/var/run/wireguard", f"{name}: /var/run/wireguard hostPath")
    cm = vols.get(mounts.get("/etc/phantommesh"), {}).get("configMap") or {}
    cm_docs = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    check(cm.get("name") in cm_docs, f"{name}: config volume names ConfigMap {cm.get('name')!r}, rendered: {list(cm_docs)}")
    # A hash suffix would restart every daemon on any config edit; the
    # daemon re-reads its config in place instead.
    check(cm.get("name") == CONFIG_MAP,
          f"{name}: config ConfigMap is {cm.get('name')!r}, want {CONFIG_MAP!r} (disableNameSuffixHash)")
    for m in mount_list:
        v = vols.get(m["name"]) or {}
        if "configMap" in v or "secret" in v:
            check(not m.get("subPath") and not m.get("subPathExpr"),
                  f"{name}: volume {m['name']} mounted with subPath: the kubelet never updates it")
        for other in mount_list:
            ov = vols.get(other["name"]) or {}
            if other is not m and ("configMap" in ov or "secret" in ov) \
                    and m["mountPath"].startswith(other["mountPath"].rstrip("/") + "/"):
                err(f"{name}: {m['mountPath']} is mounted inside the {other['name']} volume ({other['mountPath']})")
    # No private key from a Secret: the only Secrets the pod mounts are the
    # etcd client certificate and the admin token.
    secret_mounts = {}
    token_mounted = False
    for m in mount_list:
        sec = (vols.get(m["name"]) or {}).get("secret")
        if sec is None:
            continue
        if sec.get("secretName") == ADMIN_TOKEN_SECRET:
            check(m.get("readOnly") is True, f"{name}: the admin token must be mounted readOnly")
            token_mounted = token_mounted or \
                token_file == m["mountPath"].rstrip("/") + "/" + ADMIN_TOKEN_KEY
            continue
        check(sec.get("secretName") == ETCD_CLIENT_SECRET,
              f"{name}: mounts Secret {sec.get('secretName')!r}; only {ETCD_CLIENT_SECRET!r} and "
              f"{ADMIN_TOKEN_SECRET!r} are expected (no keys in Secrets)")
        secret_mounts[m["mountPath"]] = (m, sec)
    check(token_mounted, f"{name}: PHANTOMMESH_ADMIN_TOKEN_FILE ({token_file!r}) is not key {ADMIN_TOKEN_KEY!r} "
          f"of a mounted Secret {ADMIN_TOKEN_SECRET!r}")
    for v in vols.values():
        for src in (v.get("projected") or {}).get("sources") or []:
            check("secret" not in src, f"{name}: projected Secret in volume {v['name']}")
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    check_mesh_config(name, cm_docs.get(cm.get("name")), mount_list, vols, secret_mounts, fs_group)
    sa = pod.get("serviceAccountName")
    check(any(d.get("kind") == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs),
          f"{name}: ServiceAccount {sa!r} not rendered")
    ns = ds["metadata"].get("namespace")
    check(any(d.get("kind") == "Namespace" and d["metadata"]["name"] == ns for d in docs), f"{name}: Namespace {ns!r} not rendered")


def check_mesh_config(name, cm, mount_list, vols, secret_mounts, fs_group):
    """The shipped daemon config, as the ConfigMap carries it."""
    if cm is None:
        return
    text = (cm.get("data") or {}).get("phantommesh.toml")
    if not check(text, f"{name}: ConfigMap has no phantommesh.toml"):
        return
    cfg = tomllib.loads(text)
    iface = cfg.get("interface") or {}
    check(not iface.get("addresses"),
          f"{name}: [interface].addresses in the shared config gives every node the same address; the mesh allocates them")
    key = iface.get("private_key_file", "")
    host_dirs = [m["mountPath"] for m in mount_list if "hostPath" in (vols.get(m["name"]) or {})]
    check(any(key.startswith(d.rstrip("/") + "/") for d in host_dirs),
          f"{name}: private_key_file {key!r} is not on a hostPath (the key must be generated and kept on the node)")
    mesh = cfg.get("mesh")
    if not check(isinstance(mesh, dict), f"{name}: phantommesh.toml has no [mesh] section"):
        return
    check(mesh.get("store") == "etcd", f"{name}: [mesh].store must be etcd")
    check(mesh.get("network"), f"{name}: [mesh].network missing (the nodes' tunnel addresses)")
    for k in ("node_name", "advertise_endpoint", "allowed_ips"):
        check(k not in mesh, f"{name}: [mesh].{k} in the shared config would be the same on every node; the env sets it")
    eps = mesh.get("endpoints") or []
    check(eps and all(e.startswith("https://") for e in eps), f"{name}: [mesh].endpoints must be https:// URLs")
    # The TLS files live in the etcd client Secret, mounted read-only.
    for k, want in (("ca_file", "ca.crt"), ("cert_file", "tls.crt"), ("key_file", "tls.key")):
        path = mesh.get(k)
        if not check(path, f"{name}: [mesh].{k} missing (mTLS to etcd)"):
            continue
        d, base = posixpath.split(path)
        hit = secret_mounts.get(d)
        if not check(hit, f"{name}: [mesh].{k} {path!r} is not in the mounted {ETCD_CLIENT_SECRET!r} Secret"):
            continue
        m, sec = hit
        check(m.get("readOnly") is True, f"{name}: the etcd client Secret must be mounted readOnly")
        items = [i.get("path") for i in sec.get("items") or []]
        check(base == want and (not items or base in items),
              f"{name}: [mesh].{k} names {base!r}, the Secret's key is {want!r}")
        mode = sec.get("defaultMode") or 0o644
        check(mode & 0o037 == 0 and (mode & 0o040 == 0 or fs_group == 65534),
              f"{name}: etcd client Secret files must be readable by root and, through fsGroup 65534, "
              "the daemon's dropped user only (defaultMode 0400, or 0440 with fsGroup 65534)")


def check_etcd(sts, docs):
    name = "StatefulSet/" + sts["metadata"]["name"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(spec.get("replicas") == 3, f"{name}: 3 members")
    check(spec.get("podManagementPolicy") == "Parallel", f"{name}: podManagementPolicy Parallel (bootstrap needs a quorum)")
    svc = [d for d in docs if d.get("kind") == "Service" and d["metadata"]["name"] == spec.get("serviceName")]
    if check(svc, f"{name}: serviceName {spec.get('serviceName')!r} not rendered"):
        ss = svc[0]["spec"]
        check(ss.get("clusterIP") == "None", f"{name}: its Service must be headless")
        check(ss.get("publishNotReadyAddresses") is True, f"{name}: its Service must publish not-ready members")
        check(all(labels.get(k) == v for k, v in (ss.get("selector") or {}).items()), f"{name}: Service selector misses the pods")
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []
    check(any(t.get("topologyKey") == "kubernetes.io/hostname"
              and all(labels.get(k) == v for k, v in ((t.get("labelSelector") or {}).get("matchLabels") or {}).items())
              for t in anti), f"{name}: required pod anti-affinity per kubernetes.io/hostname")
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"
            and all(labels.get(k) == v for k, v in ((d["spec"].get("selector") or {}).get("matchLabels") or {}).items())]
    check(any(p["spec"].get("maxUnavailable") == 1 or p["spec"].get("minAvailable") == 2 for p in pdbs),
          f"{name}: no PodDisruptionBudget keeping 2 of 3 members")
    c = pod["containers"][0]
    args = c.get("args") or []
    for flag in ("--client-cert-auth=true", "--peer-client-cert-auth=true", "--listen-client-urls=https://",
                 "--listen-peer-urls=https://", "--initial-advertise-peer-urls=https://",
                 "--advertise-client-urls=https://", "--peer-cert-allowed-cn=", "--data-dir=/var/lib/etcd/"):
        check(any(a.startswith(flag) for a in args), f"{name}: argument {flag}... missing")
    ic = next((a for a in args if a.startswith("--initial-cluster=")), "")
    check(ic.count("=https://") == 3, f"{name}: --initial-cluster must list 3 https members")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    tls = [m for m in c.get("volumeMounts") or [] if "secret" in (vols.get(m["name"]) or {})]
    check(len(tls) == 2 and all(m.get("readOnly") is True for m in tls), f"{name}: server and peer TLS Secrets, read-only")
    tls_dirs = [m["mountPath"].rstrip("/") + "/" for m in tls]
    for flag in ("--trusted-ca-file=", "--cert-file=", "--key-file=",
                 "--peer-trusted-ca-file=", "--peer-cert-file=", "--peer-key-file="):
        v = next((a[len(flag):] for a in args if a.startswith(flag)), "")
        check(any(v.startswith(d) for d in tls_dirs), f"{name}: {flag}{v} is not in a mounted TLS Secret")
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []]
    check(any(m["name"] in claims and m["mountPath"] == "/var/lib/etcd" for m in c.get("volumeMounts") or []),
          f"{name}: /var/lib/etcd must be a volumeClaimTemplate")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = (c.get(probe) or {}).get("httpGet") or {}
        check(str(p.get("path", "")).startswith("/health") and p.get("port") == "metrics",
              f"{name}: {probe} must GET /health on the metrics port")
    check(any(a.startswith("--listen-metrics-urls=http://0.0.0.0:2381") for a in args), f"{name}: metrics URL for the probes")
    sc = c.get("securityContext") or {}
    check(sc.get("allowPrivilegeEscalation") is False and (sc.get("capabilities") or {}).get("drop") == ["ALL"],
          f"{name}: no privilege escalation, capabilities dropped")
    check((pod.get("securityContext") or {}).get("runAsNonRoot") is True, f"{name}: runAsNonRoot")


def check_service(svc, ds):
    name = "Service/" + svc["metadata"]["name"]
    spec = svc["spec"]
    check(spec.get("clusterIP") == "None", f"{name}: must be headless")
    check(any(p.get("name") == "metrics" for p in spec.get("ports") or []), f"{name}: named port metrics")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    check(all(pod_labels.get(k) == v for k, v in (spec.get("selector") or {}).items()), f"{name}: selector misses the pods")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("version")
    ap.add_argument("rendered")
    ap.add_argument("--expect-release")
    ap.add_argument("--expect-kind", action="append", default=[])
    ap.add_argument("--absent-kind", action="append", default=[])
    a = ap.parse_args()
    with open(a.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = [d.get("kind") for d in docs]
    for k in a.expect_kind:
        check(k in kinds, f"{k} not rendered")
    for k in a.absent_kind:
        check(k not in kinds, f"{k} rendered but should not be")
    core = 0
    for d in docs:
        check(d.get("apiVersion") and d.get("kind") and (d.get("metadata") or {}).get("name"),
              f"document without apiVersion/kind/name: {str(d)[:80]}")
        if d.get("kind") in CRD_KINDS:
            check_crd(d, a.expect_release)
        elif str(d.get("apiVersion", "")).startswith("monitoring.coreos.com"):
            err(f"unexpected Prometheus Operator kind {d.get('kind')}")
        else:
            validate_core(d, a.version)
            core += 1
    ds = [d for d in docs if d.get("kind") == "DaemonSet"]
    if check(len(ds) == 1, "exactly one DaemonSet expected"):
        check_daemonset(ds[0], docs)
        for svc in (d for d in docs if d.get("kind") == "Service" and d["metadata"]["name"] == ds[0]["metadata"]["name"]):
            check_service(svc, ds[0])
    for sts in (d for d in docs if d.get("kind") == "StatefulSet"):
        check_etcd(sts, docs)
    # Secrets are created by the operator (certificates) and never rendered:
    # no key material in the repository.
    for d in docs:
        check(d.get("kind") != "Secret", f"Secret/{d['metadata']['name']} rendered: create Secrets with kubectl, never commit them")
    if errors:
        for e in errors:
            print("  ERROR:", e)
        sys.exit(1)
    print(f"  ok: {len(docs)} documents ({core} core validated against Kubernetes {a.version}, "
          f"{len(docs) - core} Prometheus Operator checked for shape)")


if __name__ == "__main__":
    main()
