// Package ledger is the file in which the reliability suite's reference
// consumer records what it did: every record it handled or dead-lettered,
// and every assignment, revocation, loss and commit of a partition. The
// checker reads the ledgers of all consumer processes of a run to find lost,
// duplicated and out-of-order records.
//
// # Format
//
// A ledger is a text file of tab-separated lines. The first line is a header
// ("# sluice-ledger v1" and key=value words). Then one event per line, its
// kind first and its wall-clock time in Unix nanoseconds second:
//
//	H  time topic partition offset key rid       handled (the sink succeeded)
//	W  time topic partition offset key rid       writing the record's outputs (a Kafka sink, before the write)
//	D  time topic partition offset key rid class dead-lettered (acknowledged)
//	A  time topic partition                      assigned
//	R  time topic partition                      revoked (drained, committed)
//	T  time topic partition                      revoked after the drain timed out
//	L  time topic partition                      lost (cancelled, not committed)
//	C  time topic partition offset               committed watermark
//	F  time topic partition offset               a commit of this watermark failed (reported)
//	E  time                                      the process ended gracefully
//
// key and rid are "-" when absent (a nil key, no rid header) and otherwise
// Go-quoted strings (strconv.Quote), so odd bytes survive. A rid is the
// suite's unique id of a produced record, carried in the RIDHeader header.
//
// # Durability
//
// Each event is one write(2) to a file opened with O_APPEND, made while the
// writer's lock is held and timed under that lock, so a process's events
// appear in the order it made them. A SIGKILL can interrupt the process only
// between system calls: everything written survives in the page cache, and at
// worst the line being formatted is lost. Readers skip a last line without
// its newline and count it as torn.
package ledger

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RIDHeader is the record header that carries a produced record's unique
// id in the reliability suite.
const RIDHeader = "rid"

// Kind says what an event records.
type Kind byte

// Event kinds.
const (
	Handled      Kind = 'H'
	DeadLettered Kind = 'D'
	// Writing is written by a Kafka sink before it writes a record's
	// outputs: every output in the output topic comes from an attempt
	// with a W event, so the W events bound what a reader can see.
	Writing  Kind = 'W'
	Assigned Kind = 'A'
	Revoked  Kind = 'R'
	// RevokedTimedOut is a revocation whose drain timed out (HookRevoked
	// with timedOut): what had not settled was cancelled and is not
	// committed, so records completed above it are redone by the next
	// owner.
	RevokedTimedOut Kind = 'T'
	Lost            Kind = 'L'
	Committed       Kind = 'C'
	// CommitFailed is a commit the consumer reported as failed (its
	// HookCommitted with an error): the offset it tried to commit.
	CommitFailed Kind = 'F'
	End          Kind = 'E'
)

func (k Kind) String() string { return string(rune(k)) }

// Event is one line of a ledger.
type Event struct {
	Kind Kind
	// Time is when the event was written, in Unix nanoseconds.
	Time      int64
	Topic     string
	Partition int32
	// Offset is the record's offset (H, D) or the committed watermark (C,
	// or F for one that failed).
	Offset int64
	// Key is the record's key; nil for a nil key.
	Key []byte
	// RID is the record's rid header, "" without one.
	RID string
	// Class is the failure class of a dead letter.
	Class string
}

// Writer appends events to a ledger file. It is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
	now func() time.Time
}

// Create creates (or truncates) the ledger at path and writes its header,
// with the given words (such as "member=c1") after the version.
func Create(path string, words ...string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	w := &Writer{f: f, now: time.Now}
	hdr := "# sluice-ledger v1"
	for _, word := range words {
		hdr += " " + word
	}
	if _, err := f.WriteString(hdr + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("ledger: write header: %w", err)
	}
	return w, nil
}

// Write stamps e with the current time and appends it with a single write.
func (w *Writer) Write(e Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("ledger: write after close")
	}
	e.Time = w.now().UnixNano()
	w.buf = Append(w.buf[:0], e)
	if _, err := w.f.Write(w.buf); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// Close closes the file. Writes after Close fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Append formats e as one line, newline included.
func Append(b []byte, e Event) []byte {
	b = append(b, byte(e.Kind), '\t')
	b = strconv.AppendInt(b, e.Time, 10)
	if e.Kind == End {
		return append(b, '\n')
	}
	b = append(b, '\t')
	b = append(b, e.Topic...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, int64(e.Partition), 10)
	switch e.Kind {
	case Assigned, Revoked, RevokedTimedOut, Lost:
		return append(b, '\n')
	}
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.Offset, 10)
	if e.Kind == Committed || e.Kind == CommitFailed {
		return append(b, '\n')
	}
	b = append(b, '\t')
	if e.Key == nil {
		b = append(b, '-')
	} else {
		b = strconv.AppendQuote(b, string(e.Key))
	}
	b = append(b, '\t')
	if e.RID == "" {
		b = append(b, '-')
	} else {
		b = strconv.AppendQuote(b, e.RID)
	}
	if e.Kind == DeadLettered {
		b = append(b, '\t')
		b = append(b, e.Class...)
	}
	return append(b, '\n')
}

// fields each kind's line has.
var nfields = map[Kind]int{
	Handled: 7, Writing: 7, DeadLettered: 8, Assigned: 4, Revoked: 4, RevokedTimedOut: 4, Lost: 4, Committed: 5, CommitFailed: 5, End: 2,
}

// Parse parses one line, without its newline.
func Parse(line string) (Event, error) {
	f := strings.Split(line, "\t")
	if len(f[0]) != 1 {
		return Event{}, fmt.Errorf("ledger: bad kind in %q", line)
	}
	e := Event{Kind: Kind(f[0][0])}
	want, ok := nfields[e.Kind]
	if !ok || len(f) != want {
		return Event{}, fmt.Errorf("ledger: %d fields in %q", len(f), line)
	}
	var err error
	if e.Time, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return Event{}, fmt.Errorf("ledger: time in %q: %w", line, err)
	}
	if e.Kind == End {
		return e, nil
	}
	e.Topic = f[2]
	p, err := strconv.ParseInt(f[3], 10, 32)
	if err != nil {
		return Event{}, fmt.Errorf("ledger: partition in %q: %w", line, err)
	}
	e.Partition = int32(p)
	if want == 4 {
		return e, nil
	}
	if e.Offset, err = strconv.ParseInt(f[4], 10, 64); err != nil {
		return Event{}, fmt.Errorf("ledger: offset in %q: %w", line, err)
	}
	if e.Kind == Committed || e.Kind == CommitFailed {
		return e, nil
	}
	if f[5] != "-" {
		k, err := strconv.Unquote(f[5])
		if err != nil {
			return Event{}, fmt.Errorf("ledger: key in %q: %w", line, err)
		}
		e.Key = []byte(k)
	}
	if f[6] != "-" {
		if e.RID, err = strconv.Unquote(f[6]); err != nil {
			return Event{}, fmt.Errorf("ledger: rid in %q: %w", line, err)
		}
	}
	if e.Kind == DeadLettered {
		e.Class = f[7]
	}
	return e, nil
}

// File is a ledger as read back.
type File struct {
	Path string
	// Header is the first line, without its newline.
	Header string
	Events []Event
	// Torn counts lines that did not parse, including a last line cut off
	// by a kill.
	Torn int
	// Ended is true if the ledger has an End event: its process stopped
	// gracefully.
	Ended bool
}

// Read reads a whole ledger.
func Read(path string) (*File, error) {
	t := &Tail{Path: path}
	if err := t.Poll(); err != nil {
		return nil, err
	}
	if len(t.partial) > 0 {
		t.file.Torn++
	}
	return &t.file, nil
}

// Tail reads a ledger that is still being written, a few lines at a time.
type Tail struct {
	Path    string
	off     int64
	partial []byte
	file    File
	// New holds the events read by the last Poll.
	New []Event
}

// Poll reads the lines appended since the last Poll into New (and the
// whole set into File). A missing file is not an error: nothing is new.
func (t *Tail) Poll() error {
	t.New = t.New[:0]
	t.file.Path = t.Path
	f, err := os.Open(t.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		chunk, err := r.ReadSlice('\n')
		t.off += int64(len(chunk))
		if err == bufio.ErrBufferFull {
			t.partial = append(t.partial, chunk...)
			continue
		}
		if err != nil {
			t.partial = append(t.partial, chunk...)
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("ledger: %w", err)
		}
		line := chunk[:len(chunk)-1]
		if len(t.partial) > 0 {
			line = append(t.partial, line...)
			t.partial = t.partial[:0]
		}
		t.line(line)
	}
}

func (t *Tail) line(line []byte) {
	if bytes.HasPrefix(line, []byte("#")) {
		if t.file.Header == "" {
			t.file.Header = string(line)
		}
		return
	}
	e, err := Parse(string(line))
	if err != nil {
		t.file.Torn++
		return
	}
	if e.Kind == End {
		t.file.Ended = true
	}
	t.file.Events = append(t.file.Events, e)
	t.New = append(t.New, e)
}

// File returns what has been read so far.
func (t *Tail) File() *File { return &t.file }
