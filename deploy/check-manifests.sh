#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine, in well under two minutes:
#   1. renders every deployable kustomization: each overlay (k8s/base through them: on its own it names no image
#      registry or tag), each job, and each component no overlay uses (composed on the dev overlay), with kustomize
#      (kubectl's built-in one, or the kustomize binary);
#   2. validates every rendered object, and the plain manifests in k8s/tools, against the Kubernetes 1.34 API schemas
#      with unknown fields rejected, plus the API server's name/label/selector rules, references between objects and
#      our policy (pinned images, resources, non-root, read-only root, no committed secrets): deploy/manifest-check;
#   3. lints deploy/docker/*.Dockerfile with dockerfilelint and our rules (pinned bases, numeric non-root USER, no
#      credentials, HEALTHCHECK decision, exec-form ENTRYPOINT) and checks .dockerignore;
#   4. self-test: breaks a copy of the base (a string replica count, a misspelled field) and fails unless step 2
#      rejects it, so a validator that silently accepts everything cannot pass CI; likewise a copy without the
#      silos' NetworkPolicy and a copy whose policy admits anyone to the silo ports.
# Installs what is missing, idempotently: kustomize (Debian's kustomize or kubernetes-client) and Node.js/npm with
# apt-get when run as root (as CI is), and the checker's npm packages (versions pinned in
# deploy/manifest-check/package.json) into deploy/manifest-check/node_modules.
# Usage: bash deploy/check-manifests.sh [--no-self-test]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
checker="$root/deploy/manifest-check"
self_test=1
[ "${1:-}" = "--no-self-test" ] && self_test=0

say() { printf '[check-manifests] %s\n' "$*" >&2; }
die() { printf '[check-manifests] ERROR: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {   # apt_install [apt-get install options...] PACKAGE...
  [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" -eq 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# ------------------------------------------------------------------------------------------ kustomize
# Components and `labels` need kustomize v4+: kubectl 1.21+ embeds it; Debian 12's kubernetes-client (1.20) is older.
kustomize_cmd=()
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
mkdir -p "$probe/comp"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nconfigMapGenerator:\n  - name: probe\n    literals: [a=b]\ncomponents:\n  - comp\n' > "$probe/kustomization.yaml"
printf 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nlabels:\n  - pairs:\n      probe: ok\n' > "$probe/comp/kustomization.yaml"
kustomize_works() { local r; r=$("$@" "$probe" 2>/dev/null) || return 1; [[ "$r" == *'probe: ok'* ]]; }   # renders a component with labels?
find_kustomize() {
  if command -v kubectl >/dev/null 2>&1 && kustomize_works kubectl kustomize; then kustomize_cmd=(kubectl kustomize); return 0; fi
  if command -v kustomize >/dev/null 2>&1 && kustomize_works kustomize build; then kustomize_cmd=(kustomize build); return 0; fi
  return 1
}
if ! find_kustomize; then
  say "installing kustomize (Debian package)"
  apt_install kustomize \
    || { [ -r /etc/apt/sources.list.d/llavamech-trixie.sources ] && apt_install -t trixie kustomize; } \
    || apt_install kubernetes-client \
    || true
  find_kustomize || die "no kustomize v4+ found or installable: install Debian's kustomize (Debian 13) or kubectl >= 1.21, then run again"
fi

# ------------------------------------------------------------------------------------------ node and the checker
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs and npm (Debian packages)"
  apt_install nodejs npm || die "Node.js and npm are needed (apt-get install nodejs npm)"
fi
installed_ok() {
  local pkg want have
  for pkg in kubernetes-models yaml dockerfilelint; do
    want=$(node -p "require('$checker/package.json').dependencies['$pkg']" 2>/dev/null) || return 1
    have=$(node -p "require('$checker/node_modules/$pkg/package.json').version" 2>/dev/null) || return 1
    [ "$want" = "$have" ] || return 1
  done
}
if ! installed_ok; then
  say "installing the checker's npm packages into deploy/manifest-check/node_modules"
  (cd "$checker" && npm install --no-audit --no-fund --package-lock=false --loglevel=error >&2) || die "npm install failed in $checker"
  installed_ok || die "npm install did not leave the pinned versions in $checker/node_modules"
fi

work=$(mktemp -d)
trap 'rm -rf "$work" "$probe"' EXIT
failures=0
renders=0

render() {   # render DIR OUT
  if ! "${kustomize_cmd[@]}" "$1" > "$2" 2> "$2.err"; then
    cat "$2.err" >&2
    say "FAIL render $1"
    return 1
  fi
}

validate() {   # validate LABEL FILE [--external KIND/NAME ...]
  local label=$1 file=$2
  shift 2
  if node "$checker/check.mjs" manifests "$file" "$@"; then
    say "ok   $label ($(grep -c '^kind:' "$file") objects)"
  else
    say "FAIL $label"
    return 1
  fi
}

# What every namespace has to be given by its operator (deploy/README.md): the Azure Storage secret.
ext_secret=(--external Secret/llavamech-azure-storage --external Secret/llavamech-silo-tls --external Secret/llavamech-client-tls)
# Jobs and tools run in a namespace an overlay set up: its config and volumes.
ext_namespace=("${ext_secret[@]}" --external ConfigMap/llavamech-config --external PersistentVolumeClaim/llavamech-data
  --external PersistentVolumeClaim/llavamech-models)

say "kustomize: ${kustomize_cmd[*]}"

# ------------------------------------------------------------------------------------------ 1 + 2: render, validate
for dir in k8s/overlays/*/ k8s/jobs/*/; do
  dir=${dir%/}
  [ -f "$dir/kustomization.yaml" ] || continue
  out="$work/$(echo "$dir" | tr '/' '-').yaml"
  renders=$((renders + 1))
  render "$dir" "$out" || { failures=$((failures + 1)); continue; }
  case "$dir" in
    k8s/jobs/*) validate "$dir" "$out" "${ext_namespace[@]}" || failures=$((failures + 1)) ;;
    *)          validate "$dir" "$out" "${ext_secret[@]}" || failures=$((failures + 1)) ;;
  esac
done

# Components no overlay uses yet: composed on the dev overlay, in its namespace.
for comp in k8s/components/*/; do
  comp=${comp%/}
  name=$(basename "$comp")
  grep -q "components/$name" k8s/overlays/*/kustomization.yaml 2>/dev/null && continue
  cdir="$work/compose-$name"
  mkdir -p "$cdir"
  rel=$(realpath --relative-to="$cdir" "$root/k8s")
  cat > "$cdir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: llavamech-dev
resources:
  - $rel/overlays/dev
components:
  - $rel/components/$name
EOF
  renders=$((renders + 1))
  render "$cdir" "$work/compose-$name.yaml" || { failures=$((failures + 1)); continue; }
  validate "k8s/overlays/dev + $comp" "$work/compose-$name.yaml" "${ext_secret[@]}" || failures=$((failures + 1))
done

for f in k8s/tools/*.yaml; do
  [ -f "$f" ] || continue
  validate "$f" "$f" "${ext_namespace[@]}" || failures=$((failures + 1))
done

# ------------------------------------------------------------------------------------------ 3: Dockerfiles
dockerfiles=(deploy/docker/*.Dockerfile)
[ -f "${dockerfiles[0]}" ] || die "no deploy/docker/*.Dockerfile"
if "$checker/node_modules/.bin/dockerfilelint" "${dockerfiles[@]}" > "$work/dockerfilelint.txt" 2>&1; then
  say "ok   dockerfilelint ${dockerfiles[*]}"
else
  cat "$work/dockerfilelint.txt" >&2
  say "FAIL dockerfilelint"
  failures=$((failures + 1))
fi
if node "$checker/check.mjs" dockerfiles "${dockerfiles[@]}" --dockerignore .dockerignore; then
  say "ok   Dockerfile rules (pinned bases, non-root USER, no credentials, HEALTHCHECK, exec ENTRYPOINT) and .dockerignore"
else
  say "FAIL Dockerfile rules"
  failures=$((failures + 1))
fi

# ------------------------------------------------------------------------------------------ 4: self-test
if [ "$self_test" -eq 1 ]; then
  broken="$work/selftest"
  mkdir -p "$broken"
  cp -r k8s "$broken/k8s"
  sts="$broken/k8s/base/silo-statefulset.yaml"
  sed -i -e 's/^  replicas: 2$/  replicas: "two"/' -e 's/^          imagePullPolicy: IfNotPresent$/          imagePullPolcy: IfNotPresent/' "$sts"
  if ! { grep -q 'replicas: "two"' "$sts" && grep -q 'imagePullPolcy' "$sts"; }; then
    die "self-test: could not break $sts (did its text change? update the sed patterns)"
  fi
  render "$broken/k8s/overlays/dev" "$work/selftest.yaml" || die "self-test: the broken copy does not render"
  if node "$checker/check.mjs" manifests "$work/selftest.yaml" "${ext_secret[@]}" > "$work/selftest.out" 2>&1; then
    cat "$work/selftest.out" >&2
    say "FAIL self-test: the validator accepted a StatefulSet with replicas: \"two\" and an unknown field"
    failures=$((failures + 1))
  elif grep -q '/spec/replicas must be integer' "$work/selftest.out" && grep -q 'unknown field .*imagePullPolcy' "$work/selftest.out"; then
    say "ok   self-test: a broken copy is rejected (replicas: \"two\", unknown field imagePullPolcy)"
  else
    cat "$work/selftest.out" >&2
    say "FAIL self-test: the validator failed, but not on the two planted errors"
    failures=$((failures + 1))
  fi
fi

# The network policy: a copy without it, and a copy whose silo rule admits anyone, must both be rejected.
if [ "$self_test" -eq 1 ]; then
  for mode in missing open; do
    nb="$work/selftest-net-$mode"
    mkdir -p "$nb"
    cp -r k8s "$nb/k8s"
    if [ "$mode" = missing ]; then
      sed -i '/^  - networkpolicy.yaml$/d' "$nb/k8s/base/kustomization.yaml"
      grep -q 'networkpolicy.yaml' "$nb/k8s/base/kustomization.yaml" && die "self-test: could not drop the NetworkPolicy from the base"
      expect='no NetworkPolicy selects these pods'
    else
      # The silos' first ingress rule (silo and gateway ports) opened to every pod: the first `from` peer emptied.
      python3 - "$nb/k8s/base/networkpolicy.yaml" <<'PY' || die "self-test: could not open the NetworkPolicy"
import sys
p = sys.argv[1]
s = open(p).read()
old = "    - from:\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: llavamech-silo\n"
assert s.count(old) == 1
open(p, "w").write(s.replace(old, "    - from:\n        - podSelector: {}\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: llavamech-silo\n"))
PY
      expect='allows port silo of StatefulSet llavamech-silo from anyone'
    fi
    render "$nb/k8s/overlays/dev" "$work/selftest-net-$mode.yaml" || die "self-test: the $mode-policy copy does not render"
    if node "$checker/check.mjs" manifests "$work/selftest-net-$mode.yaml" "${ext_secret[@]}" > "$work/selftest-net.out" 2>&1; then
      say "FAIL self-test: the validator accepted silos with a NetworkPolicy that is $mode"
      failures=$((failures + 1))
    elif grep -q "$expect" "$work/selftest-net.out"; then
      say "ok   self-test: silos with a NetworkPolicy that is $mode are rejected"
    else
      cat "$work/selftest-net.out" >&2
      say "FAIL self-test: the $mode-policy copy failed, but not on the policy"
      failures=$((failures + 1))
    fi
  done
fi

if [ "$failures" -gt 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all checks passed ($renders kustomizations rendered, ${#dockerfiles[@]} Dockerfiles)"
