#!/usr/bin/env bash
# Check 6: the optional/etcd component really forms a TLS cluster. Creates
# certificates with its make-certs.sh, then starts three etcd members (the
# Debian etcd-server binary) with the exact arguments the rendered
# StatefulSet gives them ($(POD_NAME) and $(POD_NAMESPACE) expanded as the
# kubelet does; certificate and data paths moved into a temp dir), each in a
# network namespace of its own joined by a bridge, where a hosts file
# resolves the members' Service DNS names. Then: every member healthy
# through the daemons' client certificate; a write on one member read on
# another; the probe paths answer 200; no client certificate, or the client
# certificate on the peer port, is refused. No traffic leaves the namespaces
# (their resolv.conf points at 127.0.0.1).
source "$(dirname "$0")/lib.sh"
need_cmd ip iproute2
need_cmd curl curl
need_cmd openssl openssl
need_cmd etcd etcd-server
need_cmd etcdctl etcd-client
need_kubectl
PY=$(venv_python)
work=$(mktemp -d /tmp/pm-etcd.XXXXXX)
add_cleanup "rm -rf '$work'"
K=$REPO_ROOT/deploy/kubernetes
NS=phantommesh

log "certificates: optional/etcd/make-certs.sh"
NAMESPACE=$NS sh "$K/optional/etcd/make-certs.sh" "$work/pki" >"$work/make-certs.out" || fail "make-certs.sh failed"
for s in etcd-server-tls etcd-peer-tls phantommesh-etcd-client; do
    grep -q "create secret generic $s " "$work/make-certs.out" || fail "make-certs.sh prints no command for Secret $s"
done
mkdir -p "$work/server" "$work/peer" "$work/client"
for d in server peer client; do
    cp "$work/pki/ca.crt" "$work/$d/ca.crt"
    cp "$work/pki/$d.crt" "$work/$d/tls.crt"
    cp "$work/pki/$d.key" "$work/$d/tls.key"
done

log "rendering the component"
cp -r "$K" "$work/k"
printf 'components:\n  - optional/etcd\n' >>"$work/k/kustomization.yaml"
kubectl kustomize "$work/k" >"$work/rendered.yaml" || fail "base + optional/etcd does not render"
# args-N: member N's command line, one word a line; probes: the probe paths.
"$PY" - "$work/rendered.yaml" "$work" "$NS" <<'PYEOF' || fail "cannot extract the StatefulSet's command line"
import sys, yaml
rendered, work, ns = sys.argv[1:]
sts = [d for d in yaml.safe_load_all(open(rendered)) if d and d["kind"] == "StatefulSet"]
assert len(sts) == 1, "one StatefulSet expected"
c = sts[0]["spec"]["template"]["spec"]["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in sts[0]["spec"]["template"]["spec"]["volumes"]}
secret_dir = {"etcd-server-tls": "server", "etcd-peer-tls": "peer"}
for i in range(sts[0]["spec"]["replicas"]):
    words = []
    for a in c["command"][1:] + c["args"]:
        a = a.replace("$(POD_NAME)", f"etcd-{i}").replace("$(POD_NAMESPACE)", ns)
        for name, path in mounts.items():
            if name in vols and "secret" in vols[name]:
                a = a.replace(path + "/", f"{work}/{secret_dir[vols[name]['secret']['secretName']]}/")
            elif name == "data":
                a = a.replace(path + "/", f"{work}/data-{i}/")
        assert "$(" not in a, f"unexpanded variable in {a}"
        words.append(a)
    open(f"{work}/args-{i}", "w").write("\n".join(words) + "\n")
with open(f"{work}/probes", "w") as f:
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        g = c[p]["httpGet"]
        assert g["port"] == "metrics", f"{p} not on the metrics port"
        f.write(g["path"] + "\n")
PYEOF
grep -q -- "--peer-cert-file=$work/peer/tls.crt" "$work/args-0" || fail "peer certificate path not mapped"

log "three namespaces on a bridge"
hub=pmd-etcd-$$-hub
make_netns "$hub"
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
hosts=""
for i in 0 1 2; do hosts+="10.78.0.1$i etcd-$i.etcd.$NS.svc etcd-$i.etcd"$'\n'; done
for i in 0 1 2; do
    ns=pmd-etcd-$$-$i
    make_netns "$ns"
    # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*.
    mkdir -p "/etc/netns/$ns"
    add_cleanup "rm -rf '/etc/netns/$ns'"
    printf '127.0.0.1 localhost\n%s' "$hosts" >"/etc/netns/$ns/hosts"
    echo 'nameserver 127.0.0.1' >"/etc/netns/$ns/resolv.conf"
    ip link add "pme$$$i" netns "$ns" type veth peer name "m$i" netns "$hub"
    ip -n "$hub" link set "m$i" master br0 up
    ip -n "$ns" addr add "10.78.0.1$i/24" dev "pme$$$i"
    ip -n "$ns" link set "pme$$$i" up
done
in_m() { local i=$1; shift; ip netns exec "pmd-etcd-$$-$i" "$@"; }

log "starting etcd-0..2 with the StatefulSet's arguments ($(etcd --version | head -1))"
for i in 0 1 2; do
    mkdir -p "$work/data-$i" && chmod 0700 "$work/data-$i"
    mapfile -t args <"$work/args-$i"
    start_bg "$work/etcd-$i.pid" "$work/etcd-$i.log" ip netns exec "pmd-etcd-$$-$i" etcd "${args[@]}"
done
eps=https://etcd-0.etcd.$NS.svc:2379,https://etcd-1.etcd.$NS.svc:2379,https://etcd-2.etcd.$NS.svc:2379
ctl() { # MEMBER-NETNS-INDEX CERT-DIR ARGS...: etcdctl as a daemon would talk
    local i=$1 d=$2
    shift 2
    in_m "$i" etcdctl --endpoints="$eps" --dial-timeout=2s --command-timeout=3s \
        --cacert="$work/$d/ca.crt" --cert="$work/$d/tls.crt" --key="$work/$d/tls.key" "$@"
}
wait_until 60 ctl 0 client endpoint health || {
    ctl 0 client endpoint health || true
    tail -5 "$work"/etcd-*.log
    fail "the cluster did not become healthy within 60 s"
}
ctl 0 client endpoint health 2>&1 | sed 's/^/    | /'
[ "$(ctl 0 client member list | grep -c ', started, ')" = 3 ] || fail "want 3 started members"

log "a write through etcd-0 is read through etcd-2"
in_m 1 etcdctl --endpoints="https://etcd-0.etcd.$NS.svc:2379" --cacert="$work/client/ca.crt" \
    --cert="$work/client/tls.crt" --key="$work/client/tls.key" put /phantommesh/default/test hello >/dev/null \
    || fail "put through etcd-0 failed"
got=$(in_m 1 etcdctl --endpoints="https://etcd-2.etcd.$NS.svc:2379" --cacert="$work/client/ca.crt" \
    --cert="$work/client/tls.crt" --key="$work/client/tls.key" get --print-value-only /phantommesh/default/test)
[ "$got" = hello ] || fail "read through etcd-2 gave [$got]"

log "probe paths answer 200 on every member"
while read -r path; do
    for i in 0 1 2; do
        code=$(in_m "$i" curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://10.78.0.1$i:2381$path")
        [ "$code" = 200 ] || fail "etcd-$i: GET $path answered $code"
    done
    log "  $path: 200 x3"
done <"$work/probes"

# Each member's HTTP gateway dials its own gRPC port with the server
# certificate: a certificate it refuses there is logged at start.
! grep -h 'rejected connection' "$work"/etcd-*.log | grep -v 'ServerName "etcd-' | grep . \
    || fail "a member refused its own connections (server certificate usage?)"

log "refusals"
if in_m 1 etcdctl --endpoints="https://etcd-0.etcd.$NS.svc:2379" --dial-timeout=2s --command-timeout=3s \
    --cacert="$work/client/ca.crt" get /x >/dev/null 2>&1; then
    fail "a client without a certificate was served"
fi
peer_members() { # CERT-DIR: GET /members on etcd-0's peer port
    in_m 1 curl -sSf --http1.1 --max-time 3 --cacert "$work/$1/ca.crt" --cert "$work/$1/tls.crt" --key "$work/$1/tls.key" \
        "https://etcd-0.etcd.$NS.svc:2380/members"
}
peer_members peer >"$work/peer-members.out" 2>&1 || {
    cat "$work/peer-members.out"; tail -3 "$work/etcd-0.log"
    fail "the peer certificate is refused on the peer port (test setup)"
}
grep -q etcd-2 "$work/peer-members.out" || fail "/members on the peer port does not list etcd-2"
if peer_members client >/dev/null 2>&1; then
    fail "the daemons' client certificate is accepted on the peer port"
fi
log "PASS"
