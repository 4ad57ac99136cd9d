#!/bin/sh
# edgemc preinstall (deb preinst / rpm %pre): create the edgemc system user.
# deb: $1 = install | upgrade | abort-upgrade; rpm: $1 = 1 (install) | 2 (upgrade).
set -e

if ! getent group edgemc >/dev/null; then
	if command -v groupadd >/dev/null; then
		groupadd --system edgemc
	else
		addgroup --system edgemc
	fi
fi
if ! getent passwd edgemc >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	if command -v useradd >/dev/null; then
		useradd --system --gid edgemc --home-dir /var/lib/edgemc --no-create-home \
			--shell "$nologin" --comment "edgemc meeting controller" edgemc
	else
		adduser --system --ingroup edgemc --home /var/lib/edgemc --no-create-home \
			--shell "$nologin" --gecos "edgemc meeting controller" edgemc
	fi
fi
exit 0
