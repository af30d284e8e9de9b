#!/bin/sh
# demo-openresty.sh: `make demo-openresty`. Run under tools/with-fake-portal.sh: starts nginx with
# examples/openresty/nginx.conf (its own prefix, in the foreground, stopped by PID) against the
# fake portal, fetches the fleet's auto-renewal status with curl, prints it, stops nginx.
set -eu
root=$(pwd)
prefix=$(mktemp -d "${TMPDIR:-/tmp}/yeastar-openresty.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$prefix/conf" "$prefix/logs"
# nginx's workers run as an unprivileged user when started as root: they must be able to read
# the CA (the portal's state folder is private), so it is copied into the prefix.
chmod 755 "$prefix"
cp "$YEASTAR_CA_FILE" "$prefix/conf/ca.pem"
chmod 644 "$prefix/conf/ca.pem"
sed -e "s|@MODULE_DIR@|$root/build/luajit|" -e "s|@EXAMPLE_DIR@|$root/examples/openresty|" \
    -e "s|@CA_FILE@|$prefix/conf/ca.pem|" -e "s|@PORT@|$port|" \
    examples/openresty/nginx.conf > "$prefix/conf/nginx.conf"
nginx -p "$prefix" -c conf/nginx.conf -g 'daemon off;' 2>"$prefix/logs/stderr" &
nginx_pid=$!
stop() {
  kill "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  rm -rf "$prefix"
}
trap stop EXIT INT TERM
i=0
until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 100 ] || ! kill -0 "$nginx_pid" 2>/dev/null; then
    echo "nginx did not start:" >&2
    cat "$prefix/logs/stderr" "$prefix/logs/error.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done
echo "nginx (pid $nginx_pid) serves http://127.0.0.1:$port with yeastar.partner on cosockets."
echo "GET /fleet/auto-renewal:"
curl -fsS "http://127.0.0.1:$port/fleet/auto-renewal" | python3 -m json.tool
