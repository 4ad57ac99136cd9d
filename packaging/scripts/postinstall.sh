#!/bin/sh
# edgemc postinstall (deb postinst / rpm %post): state directory, secrets'
# group, UDP buffer limits; enable on first install, restart on upgrade.
# deb: $1 = configure [previous-version] | abort-*; rpm: $1 = 1 (install) | 2 (upgrade).
# systemctl is only asked to act on a running systemd (not in a chroot or
# container). Paths are under $DPKG_ROOT, as dpkg sets it (empty but for
# `dpkg --root` installs, and for the tests).
set -e
root=${DPKG_ROOT:-}

case "$1" in
configure) if [ -n "$2" ]; then action=upgrade; else action=install; fi ;;
1) action=install ;;
2) action=upgrade ;;
*) exit 0 ;;
esac

install -d -o edgemc -g edgemc -m 0750 "$root/var/lib/edgemc"
# Shipped as root:root; give the service's group read access unless an
# administrator chose another group.
env=$root/etc/edgemc/edgemc.env
if [ -e "$env" ] && [ "$(stat -c %G "$env")" = root ]; then
	chgrp edgemc "$env"
fi

# Raise (never lower) the UDP buffer limits now; sysctl.d applies them at boot.
for key in rmem_max wmem_max; do
	f=$root/proc/sys/net/core/$key
	cur=$(cat "$f" 2>/dev/null) || continue
	if [ "$cur" -lt 7500000 ]; then
		(echo 7500000 >"$f") 2>/dev/null || true
	fi
done

if [ -d "$root/run/systemd/system" ]; then
	systemctl daemon-reload || true
fi
case "$action" in
install)
	# Enabled, not started: the configuration needs the operator first.
	if command -v systemctl >/dev/null; then
		systemctl ${root:+--root="$root"} enable edgemc.service || true
	fi
	;;
upgrade)
	# A running service restarts through its drain: stop, hand meetings back,
	# start, clients reconnect. A stopped one stays stopped.
	if [ -d "$root/run/systemd/system" ]; then
		systemctl try-restart edgemc.service || true
	fi
	;;
esac
exit 0
