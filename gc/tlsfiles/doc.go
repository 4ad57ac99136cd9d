// Package tlsfiles keeps TLS material read from PEM files current: a
// certificate and its key, or a CA bundle, is re-read when its file changes
// on disk (size, modification time or inode, checked at every handshake), so
// a renewal by certbot, an ACME client or a configuration manager takes
// effect on the next handshake without a restart and without touching open
// connections. A renewal that does not parse keeps the previous material and
// is logged once, naming the file.
//
// Two roles are built from it: [Server], the TLS side of a listener (server
// certificate, optional client CA for mutual TLS), and [ClientTrust], the
// trust of outbound calls (CA bundle or the system roots, optional client
// certificate), with [Peer] remembering what the last handshake of one link
// showed and logging certificate problems in plain words, once per change.
package tlsfiles
