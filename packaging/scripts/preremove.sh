#!/bin/sh
# edgemc preremove (deb prerm / rpm %preun): stop and disable on removal,
# nothing on upgrade (postinstall restarts the service then).
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
if command -v systemctl >/dev/null; then
	systemctl ${root:+--root="$root"} disable edgemc.service || true
fi
exit 0
