package kernel

import (
	"errors"
	"os"
	"sync"

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
	for _, r := range s.readers {
		s.wg.Add(1)
		go s.loop(r, fn)
	}
	return s, nil
}

func (s *Stream) loop(r *ringbuf.Reader, fn func([]byte, bool)) {
	defer s.wg.Done()
	var rec ringbuf.Record
	for {
		err := r.ReadInto(&rec)
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
