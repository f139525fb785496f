"""Validates rendered Kubernetes manifests (multi-document YAML files).

Usage: check_manifests.py K8S_VERSION RENDERED.yaml [--expect-release LABEL]
       [--expect-kind KIND]... [--absent-kind KIND]...

Core kinds are validated offline against the Kubernetes JSON schemas that ship
inside kubernetes-validate (strict: unknown fields are errors). Prometheus
Operator kinds have no schema there: they are checked for shape and for the
fields Prometheus needs. The DaemonSet is checked against the conventions of
a node networking DaemonSet (REFERENCE section 7).
"""
import argparse
import sys

import kubernetes_validate
from kubernetes_validate import utils as kvu
import yaml

CRD_GROUP = "monitoring.coreos.com/v1"
CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}

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
        check(set(caps.get("add") or []) <= {"NET_ADMIN", "NET_RAW"} and "NET_ADMIN" in (caps.get("add") or []),
              f"{name}: capabilities.add must be NET_ADMIN (NET_RAW at most)")
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
    env = {e["name"]: e for e in c.get("env") or []}
    check(((env.get("POD_IP") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
          f"{name}: POD_IP from the downward API")
    check((env.get("PHANTOMMESH_ADMIN_LISTEN") or {}).get("value") == "$(POD_IP):9586",
          f"{name}: PHANTOMMESH_ADMIN_LISTEN must be $(POD_IP):9586")
    cmdline = " ".join((c.get("command") or []) + (c.get("args") or []))
    check("--log-format json" in cmdline and " run " in f" {cmdline} ", f"{name}: must run with --log-format json")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    tun = vols.get(mounts.get("/dev/net/tun"), {}).get("hostPath") or {}
    check(tun.get("path") == "/dev/net/tun" and tun.get("type") == "CharDevice", f"{name}: /dev/net/tun CharDevice hostPath")
    wg = vols.get(mounts.get("/var/run/wireguard"), {}).get("hostPath") or {}
    check(wg.get("path") == "/var/run/wireguard", f"{name}: /var/run/wireguard hostPath")
    cm = vols.get(mounts.get("/etc/phantommesh"), {}).get("configMap") or {}
    cms = [d["metadata"]["name"] for d in docs if d.get("kind") == "ConfigMap"]
    check(cm.get("name") in cms, f"{name}: config volume names ConfigMap {cm.get('name')!r}, rendered: {cms}")
    sa = pod.get("serviceAccountName")
    check(any(d.get("kind") == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs),
          f"{name}: ServiceAccount {sa!r} not rendered")
    ns = ds["metadata"].get("namespace")
    check(any(d.get("kind") == "Namespace" and d["metadata"]["name"] == ns for d in docs), f"{name}: Namespace {ns!r} not rendered")


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
        for svc in (d for d in docs if d.get("kind") == "Service"):
            check_service(svc, ds[0])
    if errors:
        for e in errors:
            print("  ERROR:", e)
        sys.exit(1)
    print(f"  ok: {len(docs)} documents ({core} core validated against Kubernetes {a.version}, "
          f"{len(docs) - core} Prometheus Operator checked for shape)")


if __name__ == "__main__":
    main()
