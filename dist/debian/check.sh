#!/usr/bin/env bash
# CI's check of the Debian package built by dist/debian/build.sh: lintian finds no error;
# `dpkg -i` installs it; the installed binary, man pages, config and unit work; the service
# is neither enabled nor started; then it is purged again (and the user removed), leaving
# the machine as it was. Needs root, lintian, man-db, systemd (systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(ls target/debian/sinkhole_*.deb | head -n 1)
echo "lintian $deb"
lintian --fail-on error "$deb"
if getent passwd sinkhole >/dev/null; then had_user=1; else had_user=0; fi
cleanup() {
    dpkg -P sinkhole >/dev/null 2>&1 || true
    if [ "$had_user" = 0 ]; then deluser --system --quiet sinkhole >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
dpkg -i "$deb" >/dev/null
/usr/bin/sinkhole --version
getent passwd sinkhole >/dev/null || { echo "postinst did not create the user sinkhole" >&2; exit 1; }
dpkg-query -W -f='${Conffiles}\n' sinkhole | grep -q '/etc/sinkhole/sinkhole.toml' \
    || { echo "/etc/sinkhole/sinkhole.toml is not a conffile" >&2; exit 1; }
/usr/bin/sinkhole config check /etc/sinkhole/sinkhole.toml
MANPAGER=cat man sinkhole | grep -q 'sinkhole'
MANPAGER=cat man 5 sinkhole.toml | grep -q 'upstream'
MANPAGER=cat man sinkhole-config-init | grep -q 'init'
test -s /usr/share/bash-completion/completions/sinkhole
# The unit verifies with its man pages installed, and is not enabled.
systemd-analyze verify /usr/lib/systemd/system/sinkhole.service
if [ -e /etc/systemd/system/multi-user.target.wants/sinkhole.service ]; then
    echo "the package enabled the service" >&2; exit 1
fi
# What systemd would do: the user sinkhole with only CAP_NET_BIND_SERVICE binds port 53
# (in a namespace of its own) and answers.
ns="shdeb$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true; cleanup' EXIT
ip netns exec "$ns" ip link set lo up
dir=$(mktemp -d)
chmod 755 "$dir"
printf '[server]\nlisten = ["127.0.0.1:53"]\n[upstream]\nservers = ["127.0.0.1:5353"]\n[blocking]\nlists = ["/usr/share/sinkhole/messaging.txt"]\n' > "$dir/s.toml"
blocked=$(grep -v '^#' /usr/share/sinkhole/messaging.txt | grep -m1 '\.')
ip netns exec "$ns" setpriv --reuid=sinkhole --regid=sinkhole --init-groups \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
    /usr/bin/sinkhole serve --config "$dir/s.toml" >/dev/null 2>"$dir/err" &
pid=$!
ok=0
for _ in $(seq 1 50); do
    if [ "$(ip netns exec "$ns" kdig +short +time=1 +retry=0 @127.0.0.1 "$blocked" 2>/dev/null)" = "0.0.0.0" ]; then ok=1; break; fi
    sleep 0.2
done
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ "$ok" = 1 ] || { echo "the packaged binary did not answer as user sinkhole:"; cat "$dir/err"; exit 1; } >&2
[ "$uid" = "$(id -u sinkhole)" ] || { echo "ran as uid $uid, not sinkhole" >&2; exit 1; }
echo "package ok: $deb"
