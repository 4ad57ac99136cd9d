// Package packaging holds the edgemc .deb and .rpm packaging: the nfpm
// configuration, the systemd unit, the configuration and environment files,
// the man page, the install scripts and build.sh, which ties them together.
//
// Its tests check these files on their own (unit verification and exposure
// score, every setting documented, script behaviour); with EDGEMC_PACKAGES_DIR
// pointing at build.sh's output they inspect the built packages, and as root
// with EDGEMC_INSTALL_TEST=1 they install, run and remove the .deb on this
// machine, leaving it as they found it.
package packaging
