#!/bin/sh
# Installs everything compnet needs on Debian (bookworm) with Node.js 20: libtorch and jemalloc
# from Debian (apt, as root or with sudo), then the npm packages, which builds the native binding.
set -e
cd "$(dirname "$0")"
missing=""
# libgloo-dev: the headers of the Gloo that libtorch's distributed engine (c10d) links, for data-parallel training;
# chromium: headless browser for the inspect report test; fonts-dejavu-core: the report pictures' font.
for pkg in libtorch-dev libgloo-dev libjemalloc2 chromium fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "compnet setup: installing$missing (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
echo "compnet setup: npm packages and the libtorch binding"
# onnxruntime-node (the export test's runtime) would fetch GPU binaries from a host that is not
# reachable; its own switch keeps the CPU binaries its package ships.
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund --loglevel=error
test -f build/Release/compnet_torch.node || npm run build:native
