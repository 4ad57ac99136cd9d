#!/bin/sh
# Builds the edgemc .deb and .rpm packages with nfpm (pure Go).
# Usage: packaging/build.sh VERSION OUTDIR
#   VERSION  the version stamped into the binary (git describe); see pkgversion.sh
#   OUTDIR   where the packages go (created)
# Expects $BINDIR/edgemc-linux-$arch for each arch in $ARCHES
# (defaults: BINDIR=bin, ARCHES="amd64 arm64"), built with CGO_ENABLED=0.
# File times come from SOURCE_DATE_EPOCH, by default the last commit's time,
# so the same commit gives the same packages.
set -eu

[ $# -eq 2 ] || {
	echo "usage: $0 VERSION OUTDIR" >&2
	exit 2
}
version=$1
out=$2
cd "$(dirname "$0")/.."
bindir=$(cd "${BINDIR:-bin}" && pwd)
arches=${ARCHES:-amd64 arm64}
nfpm_module=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

commits=$(git rev-list --count HEAD 2>/dev/null || echo 0)
PKG_VERSION=$(packaging/pkgversion.sh "$version" "$commits")
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export PKG_VERSION SOURCE_DATE_EPOCH

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
export STAGE
GOBIN=$STAGE go install "$nfpm_module"
gzip -9n <packaging/edgemc.1 >"$STAGE/edgemc.1.gz"

mkdir -p "$out"
rm -f "$out"/edgemc_*.deb "$out"/edgemc-*.rpm
for ARCH in $arches; do
	BINARY=$bindir/edgemc-linux-$ARCH
	[ -f "$BINARY" ] || {
		echo "$0: missing $BINARY (build it with GOOS=linux GOARCH=$ARCH CGO_ENABLED=0)" >&2
		exit 1
	}
	export ARCH BINARY
	for packager in deb rpm; do
		"$STAGE/nfpm" package --config packaging/nfpm.yaml --packager "$packager" --target "$out/"
	done
done
