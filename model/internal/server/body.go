package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// requestError is a request refused before its image was decoded.
type requestError struct {
	status int
	detail string
}

func (e *requestError) Error() string { return e.detail }

func errBusy(format string, args ...any) *requestError {
	return &requestError{http.StatusServiceUnavailable, fmt.Sprintf(format, args...)}
}

// byteBudget counts bytes held against a maximum. take never waits: a
// request that cannot have memory now is refused (503), and one that holds
// memory never waits for more, so requests cannot deadlock on it.
type byteBudget struct {
	held atomic.Int64
	max  int64
}

func (b *byteBudget) take(n int64) bool {
	for {
		held := b.held.Load()
		if held+n > b.max {
			return false
		}
		if b.held.CompareAndSwap(held, held+n) {
			return true
		}
	}
}

func (b *byteBudget) give(n int64) { b.held.Add(-n) }

// Body buffers: a body starts in a buffer of at most firstRead bytes. A
// client that fills it is sending at speed, and gets a buffer for its whole
// announced length at once; a client that trickles holds no more than
// firstRead. Bodies of unknown length grow by doubling.
const firstRead = 16 << 10

// firstBuffers recycles the first-read buffers: most uploads fit in one,
// and a new one for every request (allocated, zeroed, collected) was a
// measurable share of the CPU per request. A pooled buffer is charged to
// the budget whole while a request holds it.
var firstBuffers = sync.Pool{New: func() any { return new([firstRead]byte) }}

// heldBody is a request body read into memory under the budget.
type heldBody struct {
	budget *byteBudget
	buf    []byte           // len: bytes read; cap: what the reader may fill
	held   int64            // bytes charged to the budget
	pooled *[firstRead]byte // buf's array when it came from firstBuffers
}

func (h *heldBody) release() {
	h.budget.give(h.held)
	h.held = 0
	h.buf = nil
	h.drop()
}

// drop gives a pooled array back; buf must no longer be used.
func (h *heldBody) drop() {
	if h.pooled != nil {
		firstBuffers.Put(h.pooled)
		h.pooled = nil
	}
}

// grow makes room for at least one more byte: up to want bytes in all, and
// never more than limit+1 (one byte past the limit tells it was exceeded).
func (h *heldBody) grow(want, limit int64) bool {
	size := min(max(want, 2*int64(cap(h.buf))), limit+1)
	if size <= int64(len(h.buf)) {
		return true // at limit+1 bytes: the reader stops
	}
	if cap(h.buf) == 0 && size <= firstRead {
		if !h.budget.take(firstRead) {
			return false
		}
		h.pooled = firstBuffers.Get().(*[firstRead]byte)
		h.buf, h.held = h.pooled[:0:size], firstRead
		return true
	}
	if !h.budget.take(size) {
		return false
	}
	buf := make([]byte, len(h.buf), size)
	copy(buf, h.buf)
	h.budget.give(h.held)
	h.drop()
	h.buf, h.held = buf, size
	return true
}

// readBody reads r (at most limit bytes) into memory held in budget.
// sizeHint is the length announced for it (or an upper bound of it), -1 if
// unknown. On success the caller must call release.
func readBody(r io.Reader, sizeHint, limit int64, budget *byteBudget) (data []byte, release func(), rerr *requestError) {
	h := &heldBody{budget: budget}
	first := int64(firstRead)
	if sizeHint >= 0 {
		first = min(first, sizeHint+1) // +1: the EOF is read without growing
	}
	busy := errBusy("server is holding its limit of %d bytes of uploads; retry later", budget.max)
	if !h.grow(first, limit) {
		return nil, nil, busy
	}
	for {
		if len(h.buf) == cap(h.buf) {
			if int64(len(h.buf)) > limit {
				h.release()
				return nil, nil, tooLarge(limit)
			}
			want := 2 * int64(cap(h.buf))
			if sizeHint > int64(len(h.buf)) {
				want = sizeHint + 1
			}
			if !h.grow(want, limit) {
				h.release()
				return nil, nil, busy
			}
		}
		n, err := r.Read(h.buf[len(h.buf):cap(h.buf)])
		h.buf = h.buf[:len(h.buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			h.release()
			return nil, nil, &requestError{http.StatusBadRequest, fmt.Sprintf("reading the request body: %v", err)}
		}
	}
	if int64(len(h.buf)) > limit {
		h.release()
		return nil, nil, tooLarge(limit)
	}
	return h.buf, h.release, nil
}

func tooLarge(limit int64) *requestError {
	return &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", limit)}
}

// readImage returns the image bytes of a multipart "file" field or of a raw
// image body, held in the body budget until release is called.
func (s *Server) readImage(r *http.Request) (data []byte, release func(), rerr *requestError) {
	limit := s.limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, nil, &requestError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)}
	}
	contentType := r.Header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return nil, nil, &requestError{http.StatusUnsupportedMediaType, fmt.Sprintf("malformed Content-Type %q: %v", contentType, err)}
	}
	switch {
	case mediaType == "multipart/form-data":
		data, release, rerr = s.readMultipartFile(r, params["boundary"])
	case strings.HasPrefix(mediaType, "image/") || mediaType == "application/octet-stream":
		data, release, rerr = readBody(r.Body, r.ContentLength, limit, &s.bodies)
	default:
		return nil, nil, &requestError{http.StatusUnsupportedMediaType, fmt.Sprintf(
			"unsupported Content-Type %q: send multipart/form-data with a \"file\" field, or the image itself as image/* or application/octet-stream", mediaType)}
	}
	if rerr != nil {
		return nil, nil, rerr
	}
	if len(data) == 0 {
		release()
		return nil, nil, &requestError{http.StatusBadRequest, "the image is empty"}
	}
	return data, release, nil
}

// readMultipartFile streams the form and keeps only the "file" part in
// memory (never on disk: the root filesystem is read-only). Other fields
// are skipped. The request's length bounds the part's.
func (s *Server) readMultipartFile(r *http.Request, boundary string) ([]byte, func(), *requestError) {
	if boundary == "" {
		return nil, nil, &requestError{http.StatusBadRequest, "reading the request body: multipart Content-Type without a boundary"}
	}
	limited := &limitedReader{r: r.Body, left: s.limits.MaxBodyBytes}
	mr := multipart.NewReader(limited, boundary)
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) && parts > 0 {
			return nil, nil, &requestError{http.StatusUnprocessableEntity, `multipart form has no "file" field`}
		}
		if limited.exceeded {
			return nil, nil, tooLarge(s.limits.MaxBodyBytes)
		}
		if err != nil {
			return nil, nil, &requestError{http.StatusBadRequest, fmt.Sprintf("reading the request body: malformed multipart body: %v", err)}
		}
		if part.FormName() != "file" {
			if _, err := io.Copy(io.Discard, part); err != nil {
				if limited.exceeded {
					return nil, nil, tooLarge(s.limits.MaxBodyBytes)
				}
				return nil, nil, &requestError{http.StatusBadRequest, fmt.Sprintf("reading the request body: %v", err)}
			}
			continue
		}
		data, release, rerr := readBody(part, r.ContentLength, s.limits.MaxBodyBytes, &s.bodies)
		if limited.exceeded {
			if release != nil {
				release()
			}
			return nil, nil, tooLarge(s.limits.MaxBodyBytes)
		}
		return data, release, rerr
	}
}

// limitedReader reads at most left bytes of r, then fails, noting it.
// Unlike http.MaxBytesReader it leaves the connection to the handler, which
// reads the rest of the body after its answer (see refuse).
type limitedReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

var errBodyTooLarge = errors.New("body too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.exceeded = true
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left+1] // one byte more tells that the body goes on
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n = int(l.left)
		l.left = 0
		l.exceeded = true
		return n, errBodyTooLarge
	}
	l.left -= int64(n)
	return n, err
}

// refuse answers a request that will not be served, then reads what is left
// of its body (up to a bound), so that a client which sends the whole body
// before reading the answer (Python's urllib and requests do) gets the
// answer instead of a connection reset.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *requestError) {
	w.Header().Set("Connection", "close")
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.status, errorBody{Detail: e.detail})
	if r.Header.Get("Expect") != "" || r.ContentLength > drainLimit*s.limits.MaxBodyBytes {
		return // a 100-continue client sends no body after a final answer; a huge one is not worth reading
	}
	_ = http.NewResponseController(w).Flush()
	_, _ = io.CopyN(io.Discard, r.Body, drainLimit*s.limits.MaxBodyBytes) // bounded in time by the read timeout too
}

// drainLimit: refused bodies up to this many times MaxBodyBytes are read
// (and dropped) so that their clients see the answer.
const drainLimit = 4

// plainErrorsAsJSON turns the text/plain error answers of handlers we do
// not write (ServeMux's 404 and 405, promhttp's) into FastAPI's JSON shape.
func plainErrorsAsJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jw := &jsonErrorWriter{ResponseWriter: w}
		next.ServeHTTP(jw, r)
		if jw.status != 0 {
			jw.ResponseWriter.Header().Del("X-Content-Type-Options")
			writeJSON(jw.ResponseWriter, jw.status, errorBody{Detail: strings.TrimSpace(string(jw.text))})
		}
	})
}

type jsonErrorWriter struct {
	http.ResponseWriter
	status int    // non-zero: a plain-text error being captured
	text   []byte // its text
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if w.status != 0 {
		w.text = append(w.text, b...)
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
