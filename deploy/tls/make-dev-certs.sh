#!/usr/bin/env bash
# Makes a development CA and the certificates of a cluster with mutual TLS (README, "Security model"):
#
#   OUT/ca/ca.crt, ca.key                   the CA (keep ca.key off the cluster)
#   OUT/silo/tls.crt, tls.key, ca.crt       every silo (server and client authentication: silos call each other)
#   OUT/client/tls.crt, tls.key, ca.crt     a client: submit, status, cancel, the nightly job
#
# Each folder is the layout of a Kubernetes TLS Secret as cert-manager writes it, so it can be mounted as it is:
#   kubectl create secret generic llavamech-silo-tls --from-file=OUT/silo
#   kubectl create secret generic llavamech-client-tls --from-file=OUT/client
#
# An existing OUT/ca is reused, so running the script again issues new silo and client certificates from the same CA
# (rotation: replace the Secrets, restart the silos one by one). Options:
#   --days N        validity of the silo and client certificates (default 90; the CA gets 10 years)
#   --client NAME   also make OUT/NAME for another client (its certificate's CN is NAME); repeatable
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
[ $# -ge 1 ] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
out=$1; shift
days=90
clients=(client)
while [ $# -gt 0 ]; do
  case "$1" in
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --client) clients+=("${2:?--client needs a name}"); shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "make-dev-certs.sh: unknown option '$1'" >&2; usage 2 ;;
  esac
done
[[ "$days" =~ ^[0-9]+$ ]] && [ "$days" -ge 1 ] || { echo "make-dev-certs.sh: --days must be a positive integer, got '$days'" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-dev-certs.sh: openssl is not installed" >&2; exit 1; }

umask 077
mkdir -p "$out/ca"
if [ ! -f "$out/ca/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
    -subj "/O=LlavaMech/CN=LlavaMech development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca/ca.key" -out "$out/ca/ca.crt" 2>/dev/null
  echo "created CA $out/ca/ca.crt"
else
  echo "reusing CA $out/ca/ca.crt"
fi

# issue NAME CN EKU: OUT/NAME/{tls.crt,tls.key,ca.crt}
issue() {
  local dir="$out/$1" cn=$2 eku=$3
  mkdir -p "$dir"
  local ext; ext=$(mktemp)
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n' "$eku" "$cn" > "$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=LlavaMech/CN=$cn" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  openssl x509 -req -sha256 -days "$days" -in "$dir/tls.csr" -CA "$out/ca/ca.crt" -CAkey "$out/ca/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$ext" -out "$dir/tls.crt" 2>/dev/null
  rm -f "$dir/tls.csr" "$ext"
  cp "$out/ca/ca.crt" "$dir/ca.crt"
  echo "issued $dir/tls.crt (CN=$cn, $eku, $days days)"
}

issue silo llavamech-silo serverAuth,clientAuth
for c in "${clients[@]}"; do issue "$c" "$c" clientAuth; done
