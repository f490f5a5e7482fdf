package main

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// idleBody cuts off a request whose body sends nothing for idle. Each read
// of the body moves the connection's read deadline idle ahead. A slow
// upload that keeps sending lives on, and a stalled one ends with a read
// error that frees its connection, file and goroutine. Zero idle returns h.
func idleBody(h http.Handler, idle time.Duration) http.Handler {
	if idle <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody extends the read deadline before each read and clears it
// at the body's end. net/http starts a background read of the connection
// there, and a deadline left set would end that read and cancel the
// request's context while the handler still works. A body not read to its
// end keeps the deadline, so net/http's discard of the rest after the
// handler cannot wait on a stalled client either.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	// A connection that does not support deadlines (a test recorder)
	// reads without one.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
