// Package web serves edgemc's operator surface on the http-listen address:
// the live status page, its JSON API, liveness and readiness probes,
// Prometheus metrics and, in lab mode, a browser demo that joins a meeting
// over WebTransport.
//
// The package knows nothing about the rest of the appliance: it reads a
// [Status] snapshot through the [StatusSource] interface (the page, the
// probes and the state metrics of [NewStateCollector] all read the same
// one), records events through [Metrics] methods with plain signatures, and
// asks a [Lab] for join details. The HTML, CSS and JavaScript are embedded in the binary and need
// no network or build step.
package web
