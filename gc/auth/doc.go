// Package auth verifies the EdDSA (Ed25519) JSON Web Tokens of a Dark Tower
// deployment: service tokens carried by Global Controller and Media Handler
// calls into edgemc, and meeting/guest join tokens presented by clients.
//
// Keys come from a KeySource: either the Auth Controller's JWKS document
// (JWKS, cached and refreshed on an unknown kid, rate limited) or a single
// pinned public key (NewStaticKeys, for air-gapped hosts).
//
// Every verification failure is a *TokenError whose Reason names the cause;
// all of them match errors.Is(err, ErrInvalidToken). Tokens never appear in
// errors or logs produced by this package.
package auth
