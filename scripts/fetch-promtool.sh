#!/usr/bin/env bash
# promtool (Prometheus's config and rule checker), which tests/unit/test_web_monitoring_config.py runs on
# deploy/prometheus. Only the one binary is taken from Debian's prometheus package (unpacked, not installed:
# the package would also install and start a Prometheus server) into .cache/promtool.
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/.cache/promtool"
if command -v promtool >/dev/null || [ -x "$dest/promtool" ]; then exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
SUDO=
[ "$(id -u)" = "0" ] || SUDO=sudo
cd "$work"
if ! apt-get download -q prometheus >/dev/null 2>&1; then
  $SUDO apt-get update -q
  apt-get download -q prometheus
fi
dpkg-deb -x prometheus_*.deb unpacked
mkdir -p "$dest"
mv unpacked/usr/bin/promtool "$dest/promtool"
"$dest/promtool" --version | head -1 >&2
