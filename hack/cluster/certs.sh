#!/usr/bin/env bash
# Make the cluster's PKI under $RUN/pki (once; kept until down.sh --purge):
# a CA, the apiserver's serving cert, one client cert per component, the service-account key.
set -euo pipefail
. "$(dirname "$0")/common.sh"
PKI="$RUN/pki"
mkdir -p "$PKI"; chmod 700 "$PKI"
cd "$PKI"

if [[ ! -f ca.crt ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=dbmigrate-local-ca" -out ca.crt
fi
if [[ ! -f sa.key ]]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi

# cert NAME SUBJECT [SAN] : key + cert signed by the CA
cert() {
  local name=$1 subj=$2 san=${3:-} ext
  [[ -f $name.crt ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  ext="$(mktemp)"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } > "$ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
    -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$ext" "$name.csr"
}

cert apiserver "/CN=kube-apiserver" \
  "IP:$NODE_IP,IP:$API_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=dbmigrate-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME,DNS:localhost"
cert kube-proxy "/CN=system:kube-proxy"
cert provisioner "/CN=dbmigrate:local-provisioner"

# kubeconfig NAME USER_CERT -> $RUN/NAME.kubeconfig (embedded certs: the file stands alone)
kubeconfig() {
  local out="$RUN/$1.kubeconfig"
  [[ -f $out ]] && return 0
  cat > "$out.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: dbmigrate-local
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 < ca.crt)
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 < "$2.crt")
    client-key-data: $(base64 -w0 < "$2.key")
contexts:
- name: dbmigrate-local
  context: {cluster: dbmigrate-local, user: $1}
current-context: dbmigrate-local
KC
  chmod 600 "$out.tmp"; mv "$out.tmp" "$out"
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kubelet kubelet
kubeconfig kube-proxy kube-proxy
kubeconfig provisioner provisioner
