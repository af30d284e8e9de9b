#!/bin/sh
# with-fake-portal.sh CMD...: starts the bundled fake portal on 127.0.0.1, runs CMD with
# YEASTAR_BASE_URL, YEASTAR_CA_FILE, YEASTAR_CLIENT_ID, YEASTAR_CLIENT_SECRET and
# YEASTAR_CONTROL_URL (the portal's control plane) set, stops it.
set -eu
dir=$(mktemp -d "${TMPDIR:-/tmp}/yeastar-fake-portal.XXXXXX")
# The portal beside this script, so that CMD may run from any directory.
python3 "$(dirname "$0")/../fakeportal/portal.py" --state-dir "$dir" >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
# $! may be a wrapper (a pyenv shim forks the real interpreter): stop the PID the portal reports.
stop() {
  real=$(cat "$dir/portal.pid" 2>/dev/null || true)
  kill "$pid" ${real:+"$real"} 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT INT TERM
i=0
while [ ! -f "$dir/portal.json" ]; do
  i=$((i + 1))
  if [ "$i" -gt 150 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "the fake portal did not start:" >&2
    cat "$dir/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
eval "$(python3 -c '
import json, shlex, sys
p = json.load(open(sys.argv[1]))
for k, v in (("BASE_URL", "base_url"), ("CA_FILE", "ca_file"), ("CLIENT_ID", "client_id"),
             ("CLIENT_SECRET", "client_secret"), ("CONTROL_URL", "control_url")):
    print("export YEASTAR_%s=%s" % (k, shlex.quote(str(p[v]))))
' "$dir/portal.json")"
"$@"
