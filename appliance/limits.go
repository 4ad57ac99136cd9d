package appliance

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/web"
	"github.com/edgemc/edgemc/webtransport/netlimit"
)

// Bounds of the status server (http-listen) that are no settings: a client
// has this long to send its request headers, its whole request, to read
// the answer (the live-update stream is exempt: it bounds each event
// instead), and an idle keep-alive connection is closed after
// httpIdleTimeout.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 64 << 10
)

// limitListeners bounds the connections open on the gRPC and HTTP
// listeners, in all and per client address.
func (a *appliance) limitListeners() {
	a.grpcLis = a.limited(a.grpcLis, "grpc", a.cfg.GRPCMaxConnections, a.cfg.GRPCMaxConnectionsPerAddress)
	a.httpLis = a.limited(a.httpLis, "http", a.cfg.HTTPMaxConnections, a.cfg.HTTPMaxConnectionsPerAddress)
}

func (a *appliance) limited(l net.Listener, name string, max, perAddress uint32) net.Listener {
	return &netlimit.Listener{
		Listener: l,
		Limits:   &netlimit.Counter{Max: int(max), PerAddress: int(perAddress)},
		Refused:  func(reason string) { a.metrics.ConnectionRefused(name, reason) },
		Logger:   a.log.With("component", name),
	}
}

// grpcServer is the gRPC server of grpc-listen.
func (a *appliance) grpcServer() *grpc.Server {
	return gc.NewServer(gc.ServerConfig{
		Verifier: a.verifier,
		Logger:   a.log.With("component", "grpc"),
		Limits: gc.Limits{
			MaxStreams:     a.cfg.GRPCMaxStreams,
			RequestTimeout: a.cfg.GRPCRequestTimeout,
			IdleTimeout:    a.cfg.GRPCIdleTimeout,
		},
		Refusals: a.metrics,
		Observer: a.metrics,
		TLS:      a.cp.serverTLS(),
		Media:    a.ctrl,
	}, a.ctrl)
}

// httpServer is the status server of http-listen. Its requests (the live
// updates among them) end when base does.
func (a *appliance) httpServer(base context.Context) *http.Server {
	return &http.Server{
		Handler: web.NewHandler(web.Options{
			StatusToken: a.statusTok, Registry: a.registry, Lab: a.labHandle(), Logger: a.log,
			MaxEventStreams: int(a.cfg.HTTPMaxEventStreams),
		}, a),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		// net/http's own complaints (a bad TLS handshake, an accept error)
		// go to the structured log, at debug level.
		ErrorLog: slog.NewLogLogger(a.log.With("component", "http").Handler(), slog.LevelDebug),
	}
}
