#!/bin/sh
# edgemc postremove (deb postrm / rpm %postun).
# deb: $1 = remove | purge | upgrade | failed-upgrade | abort-* | disappear;
# rpm: $1 = 0 (erase) | 1 (upgrade).
# Removal keeps /var/lib/edgemc (the meetings' state); a deb purge deletes it.
# rpm has no purge: after `rpm -e edgemc`, delete /var/lib/edgemc by hand.
# A deb remove keeps the unit's enable state, masked until a reinstall
# (deb-systemd-helper); purge forgets it. The edgemc user stays in both
# cases, as files it owned may remain.
# Paths are under $DPKG_ROOT, as in postinstall.sh.
set -e
root=${DPKG_ROOT:-}

case "$1" in
remove | 0)
	if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper mask edgemc.service >/dev/null || true
	fi
	if [ -d "$root/run/systemd/system" ]; then
		systemctl daemon-reload || true
	fi
	;;
purge)
	if command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper purge edgemc.service >/dev/null || true
		deb-systemd-helper unmask edgemc.service >/dev/null || true
	else
		rm -f "$root"/etc/systemd/system/*.wants/edgemc.service
	fi
	rm -rf "$root/var/lib/edgemc"
	rmdir "$root/etc/edgemc" 2>/dev/null || true
	;;
esac
exit 0
