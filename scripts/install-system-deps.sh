#!/usr/bin/env bash
# Installs what the stack needs from Debian's packages when it is missing: a JDK and Maven (Kafka from Maven
# Central), PostgreSQL (tests and --postgres runs). With --browser also Chromium and its driver, which only the
# browser tests need (`make test` asks for them, `make run` does not; CME_BROWSER_TESTS=0 skips them).
set -euo pipefail
browser=0
[ "${1:-}" = "--browser" ] && browser=1
[ "${CME_BROWSER_TESTS:-1}" = "1" ] || browser=0
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ "$browser" = "1" ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing system packages: ${need[*]}" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
