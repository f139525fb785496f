#!/bin/sh
# Certificates for the optional/etcd component and the PhantomMesh daemons,
# with openssl only. Writes into DIR (created; refuses one that holds a CA
# already, so a second run cannot replace the CA under running members):
#   ca.crt ca.key             the CA (keep ca.key offline: it signs members)
#   server.crt server.key     etcd's client-facing certificate (server auth,
#                             and client auth: etcd's HTTP gateway dials its
#                             own gRPC port with it)
#   peer.crt peer.key         member to member (CN etcd-peer, server and
#                             client auth; the members only accept this CN
#                             on the peer port)
#   client.crt client.key     the daemons' client certificate (CN phantommesh)
# and prints the kubectl commands that create the three Secrets.
#
#   deploy/kubernetes/optional/etcd/make-certs.sh DIR
#   NAMESPACE=phantommesh MEMBERS=3 DAYS=825   (defaults)
#
# Names: each member as etcd-N.etcd, etcd-N.etcd.NS, etcd-N.etcd.NS.svc and
# etcd-N.etcd.NS.svc.cluster.local. No IP addresses in the peer certificate:
# etcd then checks that a connecting peer's IP is one of its names' DNS
# answers (with an IP in it, it would demand exactly that IP).
set -eu
dir=${1:?usage: make-certs.sh DIR}
ns=${NAMESPACE:-phantommesh}
members=${MEMBERS:-3}
days=${DAYS:-825}
mkdir -p "$dir"
[ ! -e "$dir/ca.key" ] || { echo "make-certs.sh: $dir/ca.key exists; use a new directory" >&2; exit 1; }
cd "$dir"
umask 077

names=""
i=0
while [ "$i" -lt "$members" ]; do
    for d in "etcd-$i.etcd" "etcd-$i.etcd.$ns" "etcd-$i.etcd.$ns.svc" "etcd-$i.etcd.$ns.svc.cluster.local"; do
        names="$names${names:+,}DNS:$d"
    done
    i=$((i + 1))
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=phantommesh-etcd-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt

# issue NAME CN EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES]
issue() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$3"
        [ -z "${4:-}" ] || echo "subjectAltName=$4"
    } >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
# localhost/127.0.0.1: etcdctl inside a member's pod, and the gateway.
issue server etcd-server serverAuth,clientAuth "$names,DNS:etcd,DNS:etcd.$ns,DNS:etcd.$ns.svc,DNS:localhost,IP:127.0.0.1"
issue peer etcd-peer serverAuth,clientAuth "$names"
issue client phantommesh clientAuth
chmod 0644 ca.crt server.crt peer.crt client.crt

cat <<CMDS
Certificates in $dir. Create the Secrets (namespace $ns):
  kubectl -n $ns create secret generic etcd-server-tls --from-file=ca.crt=$dir/ca.crt --from-file=tls.crt=$dir/server.crt --from-file=tls.key=$dir/server.key
  kubectl -n $ns create secret generic etcd-peer-tls --from-file=ca.crt=$dir/ca.crt --from-file=tls.crt=$dir/peer.crt --from-file=tls.key=$dir/peer.key
  kubectl -n $ns create secret generic phantommesh-etcd-client --from-file=ca.crt=$dir/ca.crt --from-file=tls.crt=$dir/client.crt --from-file=tls.key=$dir/client.key
Keep $dir/ca.key out of the cluster.
CMDS
