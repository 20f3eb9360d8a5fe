package kernel

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Stream delivers raw ring-buffer records, from both ring buffers, to one
// callback; calls never overlap.
type Stream struct {
	readers []*ringbuf.Reader
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
}

// Stream starts reading. fn gets each record's bytes, valid only during
// the call, and whether that ring buffer is now empty (a good moment to
// flush buffered output).
func (inst *Instance) Stream(fn func(rec []byte, idle bool)) (*Stream, error) {
	s := &Stream{}
	names := []string{bpfMapEvents}
	if inst.cfg.Trace {
		names = append(names, bpfMapTraceEvents)
	}
	for _, n := range names {
		r, err := ringbuf.NewReader(inst.maps[n])
		if err != nil {
			s.close()
			return nil, &FeatureError{Feature: "BPF ring buffer", Err: err, Fix: "Assay needs Linux 5.8 or later"}
		}
		s.readers = append(s.readers, r)
	}
	for i, r := range s.readers {
		s.wg.Add(1)
		// The trace ring's producers batch their wake-ups
		// (ringbuf_wakeup in bpf/common.h): its reader polls too.
		go s.loop(r, names[i] == bpfMapTraceEvents, fn)
	}
	return s, nil
}

// RingPollInterval bounds how long a trace record waits in its ring
// buffer: the programs wake the reader only once per 64 KiB of records
// (bpf/common.h, ringbuf_wakeup), so the reader also wakes itself this
// often and takes what has arrived.
const RingPollInterval = 10 * time.Millisecond

func (s *Stream) loop(r *ringbuf.Reader, poll bool, fn func([]byte, bool)) {
	defer s.wg.Done()
	var rec ringbuf.Record
	if poll {
		r.SetDeadline(time.Now().Add(RingPollInterval))
	}
	for {
		err := r.ReadInto(&rec)
		if poll && errors.Is(err, os.ErrDeadlineExceeded) {
			// Every record that had arrived was delivered first.
			r.SetDeadline(time.Now().Add(RingPollInterval))
			continue
		}
		if err != nil {
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, os.ErrClosed) {
				return
			}
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
			return
		}
		idle := r.AvailableBytes() == 0
		s.mu.Lock()
		fn(rec.RawSample, idle)
		s.mu.Unlock()
	}
}

// Stop delivers every record already in the ring buffers, then stops.
// Call it after Detach so that the counters and the records agree.
func (s *Stream) Stop() error {
	for _, r := range s.readers {
		r.Flush()
	}
	s.wg.Wait()
	s.close()
	return errors.Join(s.errs...)
}

func (s *Stream) close() {
	for _, r := range s.readers {
		r.Close()
	}
}
