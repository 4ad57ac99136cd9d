#!/bin/sh
# edgemc preremove (deb prerm / rpm %preun): stop on removal, nothing on
# upgrade (postinstall restarts the service then). An rpm erase also disables
# the unit; a deb remove keeps its enable state until purge (Debian's
# convention: postremove.sh masks it meanwhile), so a reinstall keeps it.
# deb: $1 = remove | upgrade | deconfigure | failed-upgrade; rpm: $1 = 0 (erase) | 1 (upgrade).
# Paths are under $DPKG_ROOT, as in postinstall.sh.
set -e
root=${DPKG_ROOT:-}

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d "$root/run/systemd/system" ]; then
	systemctl stop edgemc.service || true
fi
if [ "$1" = 0 ] && command -v systemctl >/dev/null; then
	systemctl ${root:+--root="$root"} disable edgemc.service || true
fi
exit 0
