#!/bin/sh
# Prints the package version for an edgemc version string, as dpkg and rpm
# order them: pkgversion.sh VERSION [COMMITS]
#   v1.2.3              -> 1.2.3
#   v1.2.3-4-gabc1234   -> 1.2.3+4.gabc1234   (after 1.2.3)
#   v1.3.0-rc1          -> 1.3.0~rc1          (before 1.3.0)
#   abc1234-dirty, 57   -> 0.0.0+57.gabc1234.dirty  (no tag yet: COMMITS orders builds)
# VERSION is what `git describe --tags --always --dirty` prints; COMMITS is
# `git rev-list --count HEAD`.
set -eu

die() {
	echo "pkgversion.sh: cannot make a package version of '$1'" >&2
	exit 1
}

v=${1#v}
commits=${2:-0}
dirty=false
case $v in *-dirty)
	dirty=true
	v=${v%-dirty}
	;;
esac
[ -n "$v" ] || die "$1"

case $v in
[0-9]*.*)
	# A tag, maybe followed by git describe's -N-gHASH. (A bare hash can
	# start with a digit too, but has no dot.)
	tag=$(printf %s "$v" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
	since=${v#"$tag"}
	out=$(printf %s "$tag" | tr - '~')
	if [ -n "$since" ]; then
		out=$out+$(printf %s "${since#-}" | tr - .)
	fi
	;;
*)
	# No tag: a bare commit hash, or a word such as "dev".
	case $v in
	*[!0-9a-f]*) out=0.0.0+$commits.$v ;;
	*) out=0.0.0+$commits.g$v ;;
	esac
	;;
esac
if $dirty; then
	case $out in
	*+*) out=$out.dirty ;;
	*) out=$out+dirty ;;
	esac
fi
case $out in *[!0-9A-Za-z.+~]*) die "$1" ;; esac
printf '%s\n' "$out"
