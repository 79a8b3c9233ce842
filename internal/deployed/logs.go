package deployed

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"
)

// logFile is one function's log: what its environments print, line by
// line with the environment's number in front, and the harness's notes on
// each invocation. Tests print it when they fail.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("function log: %w", err)
	}
	return &logFile{path: path, f: f}, nil
}

// note writes one line of the harness's own, with the time.
func (l *logFile) note(format string, args ...any) {
	l.line([]byte(time.Now().UTC().Format("15:04:05.000") + " " + fmt.Sprintf(format, args...) + "\n"))
}

func (l *logFile) line(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(b)
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.f.Close()
}

// writer returns a writer that adds complete lines to the log, each
// after prefix, so that concurrent environments do not interleave within
// a line.
func (l *logFile) writer(prefix string) *lineWriter {
	return &lineWriter{log: l, prefix: prefix}
}

type lineWriter struct {
	log    *logFile
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.line(append([]byte(w.prefix), w.buf[:i+1]...))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Close writes what is left of an unfinished line.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.log.line(append(append([]byte(w.prefix), w.buf...), '\n'))
		w.buf = nil
	}
	return nil
}
