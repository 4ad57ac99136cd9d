package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/edgemc/edgemc/appliance"
	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
)

// clientFlags registers the options of `edgemc client join` on fs.
func clientFlags(fs *flag.FlagSet, o *appliance.ClientJoinOptions, tokenFile, lab *string) {
	fs.StringVar(lab, "lab", "", "status URL of an edgemc lab (http://127.0.0.1:8081): join its demo meeting with a token from its issuer, instead of --url, --meeting and --token")
	fs.StringVar(&o.URL, "url", "", "WebTransport URL of the edgemc, e.g. https://127.0.0.1:4433/ (required without --lab)")
	fs.StringVar(&o.MeetingID, "meeting", "", "meeting id (required without --lab)")
	fs.StringVar(tokenFile, "token-file", "", `file holding the join token ("-" reads standard input)`)
	fs.StringVar(&o.Token, "token", "", "join token (visible to other users of the host; prefer --token-file)")
	fs.StringVar(&o.Name, "name", "edgemc client", "participant display name")
	fs.StringVar(&o.CertHash, "cert-hash", "", "hex SHA-256 of the server certificate to trust (edgemc cert-hash prints it)")
	fs.BoolVar(&o.Insecure, "insecure", false, "skip certificate verification (lab use only)")
	fs.StringVar(&o.CorrelationID, "correlation-id", "", "correlation id of an earlier session, to reconnect")
	fs.StringVar(&o.BindingToken, "binding-token", "", "binding token of an earlier session, to reconnect")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "connect timeout")
}

// client runs `edgemc client join`.
func (c cli) client(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] != "join" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			writeCommandHelp(c.stdout, "client")
			return exitOK
		}
		return c.usageError(errors.New(`client: the only subcommand is "join" (edgemc help client)`))
	}
	var (
		o              appliance.ClientJoinOptions
		tokenFile, lab string
	)
	fs := flag.NewFlagSet("edgemc client join", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	clientFlags(fs, &o, &tokenFile, &lab)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeCommandHelp(c.stdout, "client")
			return exitOK
		}
		return c.usageError(flagError("client join", err))
	}
	if lab != "" {
		if o.URL != "" || o.MeetingID != "" || o.Token != "" || tokenFile != "" {
			return c.usageError(errors.New("client join: --lab gives the URL, meeting and token: leave out --url, --meeting, --token and --token-file"))
		}
		if err := labJoin(ctx, lab, &o); err != nil {
			fmt.Fprintf(c.stderr, "edgemc: client join: --lab: %v\n", err)
			return exitFailure
		}
	}
	switch {
	case fs.NArg() > 0:
		return c.usageError(fmt.Errorf("client join: unexpected argument %q", fs.Arg(0)))
	case o.URL == "" || o.MeetingID == "":
		return c.usageError(errors.New("client join: --url and --meeting are required"))
	case o.Token != "" && tokenFile != "":
		return c.usageError(errors.New("client join: give --token or --token-file, not both"))
	case tokenFile != "":
		tok, err := readToken(tokenFile)
		if err != nil {
			return c.usageError(fmt.Errorf("client join: --token-file: %w", err))
		}
		o.Token = tok
	}

	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	ctx, stop := c.signalContext(ctx, log, "leaving the meeting")
	defer stop()
	if err := appliance.ClientJoin(ctx, c.stdout, o); err != nil {
		fmt.Fprintf(c.stderr, "edgemc: client join: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// labJoin fills o from the join details of the lab whose status page is at
// base: its demo meeting, a participant token from its issuer, and its
// certificate's hash (unless o already trusts a certificate).
func labJoin(ctx context.Context, base string, o *appliance.ClientJoinOptions) error {
	lab, err := loadgen.NewLabTokens(base, "")
	if err != nil {
		return err
	}
	info, err := lab.Info(ctx, false, o.Name)
	if err != nil {
		return err
	}
	o.URL, o.MeetingID, o.Token = info.URL, info.MeetingID, info.Token
	if o.CertHash == "" && !o.Insecure {
		o.CertHash = info.CertSHA256
	}
	return nil
}

// readToken reads a token file ("-" for standard input). Errors never
// contain the file's contents.
func readToken(path string) (string, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("the file is empty")
	}
	return tok, nil
}
