package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// MaxFileSize bounds every PEM file read, in bytes; a public CA bundle is
// a few hundred KiB.
const MaxFileSize = 4 << 20

// FileError is a PEM file that cannot be used. Its message names the file
// and says what is wrong in plain words; it never contains key material.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// stamp identifies one version of a file: a rewrite in place changes its
// size or modification time, a replacement (rename, symlink swap) its inode.
type stamp struct {
	dev, ino   uint64
	size       int64
	mtimeNanos int64
}

// stampOf stats path, following symlinks as certbot's live/ directory and
// Kubernetes' secret volumes need. A file that cannot be stat'ed has the
// zero stamp, which no existing file has.
func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	s := stamp{size: fi.Size(), mtimeNanos: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s
}

// ReadFile reads at most MaxFileSize bytes of path; an error is a
// *FileError.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{File: path, Err: plainFileError(err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, &FileError{File: path, Err: errors.New("is a directory, not a file")}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &FileError{File: path, Err: plainFileError(err)}
	}
	if len(data) > MaxFileSize {
		return nil, &FileError{File: path, Err: fmt.Errorf("is larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}

// plainFileError drops the path an *os.PathError repeats.
func plainFileError(err error) error {
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("cannot be read: %w", pe.Err)
	}
	return fmt.Errorf("cannot be read: %w", err)
}

// watched is TLS material parsed from one or more files and re-read when
// any of them changes. It is safe for concurrent use.
type watched[T any] struct {
	files []string
	parse func(data [][]byte) (T, error)
	what  string // "certificate" or "CA bundle", for the log
	log   *slog.Logger

	mu     sync.Mutex
	cur    T
	stamps []stamp // of the files cur was read from
	failed []stamp // of the files of the last failed reload, logged once
}

// load reads the files for the first time; an error leaves nothing to fall
// back on and is returned.
func (w *watched[T]) load() error {
	stamps := w.stampAll()
	v, err := w.read()
	if err != nil {
		return err
	}
	w.cur, w.stamps = v, stamps
	return nil
}

func (w *watched[T]) stampAll() []stamp {
	s := make([]stamp, len(w.files))
	for i, f := range w.files {
		s[i] = stampOf(f)
	}
	return s
}

func (w *watched[T]) read() (T, error) {
	data := make([][]byte, len(w.files))
	for i, f := range w.files {
		var err error
		if data[i], err = ReadFile(f); err != nil {
			var zero T
			return zero, err
		}
	}
	return w.parse(data)
}

// current returns the material, re-reading the files first when one of them
// changed since it was read. A reload that fails keeps the previous
// material and logs one ERROR; it is retried only once a file changes again.
// The files are stat'ed on every call (a handshake costs far more).
func (w *watched[T]) current() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	stamps := w.stampAll()
	if slices.Equal(stamps, w.stamps) || slices.Equal(stamps, w.failed) {
		return w.cur
	}
	v, err := w.read()
	if err != nil {
		w.failed = stamps
		file := strings.Join(w.files, " ")
		if fe := (*FileError)(nil); errors.As(err, &fe) {
			file = fe.File
		}
		w.log.Error("TLS "+w.what+" changed on disk but cannot be used; keeping the previous one",
			"file", file, "error", err)
		return w.cur
	}
	w.cur, w.stamps, w.failed = v, stamps, nil
	w.log.Info("TLS "+w.what+" reloaded", "files", w.files)
	return w.cur
}

// KeyPair is a certificate chain and its private key from two PEM files,
// re-read when either changes.
type KeyPair struct{ w *watched[*tls.Certificate] }

// LoadKeyPair reads the certificate chain in certFile and the private key
// in keyFile. An unreadable or unparsable file, or a key that does not
// match the certificate, is a *FileError. A nil log discards.
func LoadKeyPair(certFile, keyFile string, log *slog.Logger) (*KeyPair, error) {
	w := &watched[*tls.Certificate]{
		files: []string{certFile, keyFile},
		parse: func(d [][]byte) (*tls.Certificate, error) { return parseKeyPairFiles(d[0], d[1], certFile, keyFile) },
		what:  "certificate",
		log:   orDiscard(log),
	}
	if err := w.load(); err != nil {
		return nil, err
	}
	return &KeyPair{w: w}, nil
}

// Certificate is the current certificate (its Leaf set), re-read first if a
// file changed.
func (k *KeyPair) Certificate() *tls.Certificate { return k.w.current() }

// Leaf is the current certificate's first certificate.
func (k *KeyPair) Leaf() *x509.Certificate { return k.Certificate().Leaf }

// parseKeyPairFiles parses the contents of a certificate file and a key
// file; the *FileError names the file at fault.
func parseKeyPairFiles(certPEM, keyPEM []byte, certFile, keyFile string) (*tls.Certificate, error) {
	if _, err := ParseCertificates(certPEM); err != nil {
		return nil, &FileError{File: certFile, Err: err}
	}
	if !hasPrivateKeyBlock(keyPEM) {
		return nil, &FileError{File: keyFile, Err: errors.New("holds no PEM private key")}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err != nil && strings.Contains(err.Error(), "does not match"):
		return nil, &FileError{File: keyFile, Err: fmt.Errorf("holds a private key that does not match the certificate in %s", certFile)}
	case err != nil:
		return nil, &FileError{File: keyFile, Err: fmt.Errorf("holds a private key that cannot be parsed (%s)", oneLine(strings.TrimPrefix(err.Error(), "tls: ")))}
	}
	return &c, nil
}

func hasPrivateKeyBlock(data []byte) bool {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// ParseCertificates parses every block of a PEM file, which must all be
// certificates (at least one). Text between blocks is ignored, as in a
// bundle with comments.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a PEM %q block (number %d) where only certificates belong", oneLine(b.Type), n)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("holds a certificate (number %d) that cannot be parsed (%s)", n, oneLine(err.Error()))
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return certs, nil
}

// Pool is a bundle of CA certificates from one PEM file, re-read when it
// changes.
type Pool struct{ w *watched[*x509.CertPool] }

// LoadPool reads the CA bundle in file: PEM certificates only, at least
// one. An unreadable or unparsable file is a *FileError. A nil log discards.
func LoadPool(file string, log *slog.Logger) (*Pool, error) {
	w := &watched[*x509.CertPool]{
		files: []string{file},
		parse: func(d [][]byte) (*x509.CertPool, error) {
			p, err := ParsePool(d[0])
			if err != nil {
				return nil, &FileError{File: file, Err: err}
			}
			return p, nil
		},
		what: "CA bundle",
		log:  orDiscard(log),
	}
	if err := w.load(); err != nil {
		return nil, err
	}
	return &Pool{w: w}, nil
}

// CertPool is the current bundle, re-read first if the file changed.
func (p *Pool) CertPool() *x509.CertPool { return p.w.current() }

// File is the bundle's path.
func (p *Pool) File() string { return p.w.files[0] }

// ParsePool parses a PEM CA bundle (see ParseCertificates).
func ParsePool(data []byte) (*x509.CertPool, error) {
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
