#!/bin/sh
# install-deps.sh: makes sure the Debian 12 packages that the build, tests and demo need are here,
# for every supported runtime (Lua 5.1-5.4 and LuaJIT; Debian's Lua libraries cover them all).
# As root it installs what is missing with apt-get; otherwise it names them and stops.
set -eu
packages="build-essential make pkg-config git curl ca-certificates openssl python3
lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-busted lua-socket lua-cjson luarocks
lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev
nginx libnginx-mod-http-lua lua-resty-core
clang llvm libclang-rt-14-dev valgrind"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "yeastar-partner needs these Debian packages:$missing" >&2
  echo "Install them as root:  apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
echo "Installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Installed packages must not start services: Debian's nginx would start on port 80. The tests
# start their own nginx, on a free port, with their own prefix.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
