#!/bin/sh
# edgemc postinstall (deb postinst / rpm %post): state directory, secrets'
# group, UDP buffer limits; enable on first install, restart on upgrade.
# deb: $1 = configure [previous-version] | abort-*; rpm: $1 = 1 (install) | 2 (upgrade).
# A deb follows Debian's convention (deb-systemd-helper): the unit is enabled
# on first install, and a removed package keeps its enable state until purge,
# so a reinstall finds the unit enabled or disabled as the administrator left it.
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
# Shipped as root:root in the deb; give the service's group read access unless
# an administrator chose another group.
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
if [ "$1" = configure ] && command -v deb-systemd-helper >/dev/null; then
	# Enabled on first install (was-enabled is true then); after a remove,
	# enabled again only if it was.
	deb-systemd-helper unmask edgemc.service >/dev/null || true
	if deb-systemd-helper --quiet was-enabled edgemc.service; then
		deb-systemd-helper enable edgemc.service >/dev/null || true
	else
		deb-systemd-helper update-state edgemc.service >/dev/null || true
	fi
elif [ "$action" = install ] && command -v systemctl >/dev/null; then
	# Enabled, not started: the configuration needs the operator first.
	systemctl ${root:+--root="$root"} enable edgemc.service || true
fi
if [ "$action" = upgrade ] && [ -d "$root/run/systemd/system" ]; then
	# A running service restarts through its drain: stop, hand meetings back,
	# start, clients reconnect. A stopped one stays stopped.
	systemctl try-restart edgemc.service || true
fi

# The stock configuration cannot start: say what it needs, in one line.
if ! grep -Eqs '^[[:space:]]*(jwks-url|jwt-public-key)[[:space:]]*=' "$root/etc/edgemc/edgemc.toml" &&
	! grep -Eqs '^[[:space:]]*EDGEMC_(JWKS_URL|JWT_PUBLIC_KEY)=.' "$env"; then
	echo "edgemc: set jwks-url (or jwt-public-key) in /etc/edgemc/edgemc.toml, and gc-url and the advertise URLs to join a Global Controller, then run: systemctl start edgemc"
fi
exit 0
