#!/usr/bin/env bash
# Makes this host able to build and run LlavaMechPipeline: checks the .NET SDK and, on
# Debian 12, installs the newer libstdc++ (GLIBCXX_3.4.32) that TorchSharp's native library
# needs, from Debian trixie pinned at low priority. Idempotent; fast when nothing is missing.
set -euo pipefail

say() { printf '[prereqs] %s\n' "$*" >&2; }
die() { printf '[prereqs] ERROR: %s\n' "$*" >&2; exit 1; }

command -v dotnet >/dev/null 2>&1 || die "the .NET SDK (dotnet, version 10) is not on PATH. Install it from https://dot.net and run again."
sdk_major=$(dotnet --version 2>/dev/null | cut -d. -f1)
[ "${sdk_major:-0}" -ge 10 ] || die "the .NET SDK on PATH is $(dotnet --version); version 10 or newer is required."

need_glibcxx=GLIBCXX_3.4.32
# awk reads all of ldconfig's output (no early `exit`): under pipefail an early exit kills ldconfig with SIGPIPE
# and the whole invocation would exit 141 without a message.
libstdcxx=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !found {print $NF; found=1}' || true)
[ -n "$libstdcxx" ] || libstdcxx=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
if [ -r "$libstdcxx" ] && grep -aq "$need_glibcxx" "$libstdcxx"; then
  exit 0
fi

[ -r /etc/os-release ] && . /etc/os-release
if [ "${ID:-}" != "debian" ]; then
  die "$libstdcxx lacks $need_glibcxx, which TorchSharp's libtorch needs. Install libstdc++ from GCC 13 or newer with your distribution's package manager and run again."
fi
if [ "$(id -u)" -ne 0 ]; then
  die "$libstdcxx lacks $need_glibcxx (TorchSharp needs it). Run once as root: sudo bash $0   (it adds Debian trixie pinned at priority 100 and installs only libstdc++6 from it)."
fi

# Reuse the URIs and keyring of the machine's own Debian source: never hard-code a mirror.
uris=""; signed=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  u=$(awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } }' "$f")
  if [ -n "$u" ]; then
    uris=$u
    signed=$(awk 'tolower($1)=="signed-by:" {print $2; exit}' "$f")
    break
  fi
done
if [ -z "$uris" ] && [ -r /etc/apt/sources.list ]; then
  uris=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^(https?|file|mirror):/) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$uris" ] || die "no Debian package source found in /etc/apt to derive a trixie source from; install libstdc++6 >= 13 ($need_glibcxx) by hand."
[ -n "$signed" ] || signed=/usr/share/keyrings/debian-archive-keyring.gpg

say "installing libstdc++6 from Debian trixie ($uris), pinned at priority 100"
cat > /etc/apt/sources.list.d/llavamech-trixie.sources <<SRC
Types: deb
URIs: $uris
Suites: trixie
Components: main
Signed-By: $signed
SRC
cat > /etc/apt/preferences.d/llavamech-trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/llavamech-trixie.sources -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null \
  || die "apt-get update for trixie failed (no network to $uris?). Install libstdc++6 >= 13 by hand."
apt-get install -y -qq -t trixie libstdc++6 >/dev/null \
  || die "apt-get install -t trixie libstdc++6 failed; see the apt output above."
grep -aq "$need_glibcxx" "$libstdcxx" || die "libstdc++6 was installed but $libstdcxx still lacks $need_glibcxx."
say "libstdc++6 now provides $need_glibcxx"
