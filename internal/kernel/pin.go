package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/inotify"
)

// BPFFS is where bpffs is mounted; PinRoot holds one directory per pinned
// instance.
const (
	BPFFS   = "/sys/fs/bpf"
	PinRoot = BPFFS + "/assay"
)

const metaMap = "meta"

// metaSize bounds the JSON description pinned with an instance.
const metaSize = 8192

// Meta describes a pinned instance; it is pinned with it, in a map.
type Meta struct {
	Name       string    `json:"name"`
	Scopes     []Scope   `json:"scopes,omitempty"`
	All        bool      `json:"all,omitempty"`
	Policy     string    `json:"policy"`
	Digest     string    `json:"digest"`
	Rules      int       `json:"rules"`
	Mode       string    `json:"mode"`
	AuditFlag  bool      `json:"audit_flag,omitempty"` // audit by --audit, whatever the policy says
	Summary    string    `json:"summary"`
	AttachedAt time.Time `json:"attached_at"`
	ReloadedAt time.Time `json:"reloaded_at,omitzero"`
	Version    string    `json:"version"`
	PID        int       `json:"pid"` // the monitor that pinned it
	Trace      bool      `json:"trace,omitempty"`
	RingBytes  int       `json:"ring_bytes"`
	RateLimit  int       `json:"rate_limit,omitempty"` // events per second per cgroup; negative: unlimited
	Object     string    `json:"object,omitempty"`
}

// ValidName reports whether name can name a pinned instance.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" ||
		name[0] == '.' {
		return fmt.Errorf("instance name %q: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'", name)
	}
	return nil
}

// ensureBPFFS mounts bpffs at BPFFS when it is not mounted (it often is
// not at boot).
func ensureBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs(BPFFS, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(BPFFS, 0o700); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	if err := unix.Mount("bpf", BPFFS, "bpf", 0, "mode=0700"); err != nil {
		return &FeatureError{Feature: "bpffs", Err: err, Fix: "mount it: mount -t bpf bpf " + BPFFS}
	}
	return nil
}

// WatchPin has w notified when the pins of instance name may be gone (then
// [PinPresent] says whether they are): a pin or the instance's directory
// removed or renamed, bpffs unmounted (IN_UNMOUNT). A file system mounted
// over BPFFS sends no event: the pins stay in force underneath, unseen.
func WatchPin(w *inotify.Watcher, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := w.Add(filepath.Join(PinRoot, name), inotify.Gone|inotify.ChildGone); err != nil {
		return err
	}
	return w.Add(PinRoot, inotify.Gone|inotify.ChildGone)
}

// Pin pins every map and link under PinRoot/NAME, so that enforcement
// continues when this process exits, crashes or is killed. After Pin,
// Close leaves the programs attached; Unpin removes them.
func (inst *Instance) Pin(meta Meta) (err error) {
	if err := ValidName(meta.Name); err != nil {
		return err
	}
	if !inst.attached {
		return errors.New("pin: not attached")
	}
	if err := ensureBPFFS(); err != nil {
		return err
	}
	if err := os.MkdirAll(PinRoot, 0o700); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	dir := filepath.Join(PinRoot, meta.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("an instance named %q is already pinned: `assay detach %s` first, or pick another name", meta.Name, meta.Name)
		}
		return fmt.Errorf("pin: %w", err)
	}
	defer func() {
		if err != nil {
			inst.unpinAll(dir)
		}
	}()
	meta.RingBytes = inst.cfg.RingBytes
	meta.RateLimit = inst.cfg.RateLimit
	meta.Trace = inst.cfg.Trace
	meta.Object = inst.cfg.Object
	meta.Scopes = inst.cfg.Scopes
	meta.All = inst.cfg.All
	mm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "assay_meta", Type: ebpf.Array, KeySize: 4, ValueSize: metaSize, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("pin: meta map: %w", err)
	}
	inst.maps[metaMap] = mm
	if err := inst.writeMeta(meta); err != nil {
		return err
	}
	for name, m := range inst.maps {
		if err := m.Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	inst.pinDir = dir
	if err := inst.pinLinks(inst.links); err != nil {
		inst.pinDir = ""
		return err
	}
	return nil
}

// pinLinks pins links of a pinned instance (a no-op when not pinned).
func (inst *Instance) pinLinks(links []namedLink) error {
	if inst.pinDir == "" {
		return nil
	}
	for _, l := range links {
		if err := l.link.Pin(filepath.Join(inst.pinDir, l.name)); err != nil {
			return fmt.Errorf("pin %s: %w", l.name, err)
		}
	}
	return nil
}

func (inst *Instance) writeMeta(meta Meta) error {
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if len(data) > metaSize {
		return fmt.Errorf("instance description is %d bytes, more than %d", len(data), metaSize)
	}
	buf := make([]byte, metaSize)
	copy(buf, data)
	return inst.maps[metaMap].Put(uint32(0), buf)
}

// Meta reads a pinned instance's description.
func (inst *Instance) Meta() (Meta, error) {
	var meta Meta
	m := inst.maps[metaMap]
	if m == nil {
		return meta, errors.New("not a pinned instance")
	}
	buf := make([]byte, metaSize)
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return meta, err
	}
	if i := strings.IndexByte(string(buf), 0); i >= 0 {
		buf = buf[:i]
	}
	err := json.Unmarshal(buf, &meta)
	return meta, err
}

// UpdateMeta rewrites a pinned instance's description.
func (inst *Instance) UpdateMeta(meta Meta) error { return inst.writeMeta(meta) }

// Pinned reports whether the instance is pinned.
func (inst *Instance) Pinned() bool { return inst.pinDir != "" }

// OpenPinned takes hold of a pinned instance: its maps (to stream events,
// read counters, reload) and its links (to detach).
func OpenPinned(name string) (*Instance, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(PinRoot, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pinned instance named %q (see `assay status`)", name)
		}
		return nil, err
	}
	inst := &Instance{maps: map[string]*ebpf.Map{}, progs: map[string]*ebpf.Program{}, pinDir: dir, attached: true}
	fail := func(err error) (*Instance, error) {
		inst.pinDir = "" // never detach what we failed to open fully
		inst.release()
		for _, m := range inst.maps {
			m.Close()
		}
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), "link_") {
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				return fail(fmt.Errorf("open pinned %s: %w", p, err))
			}
			inst.links = append(inst.links, namedLink{name: e.Name(), prog: progOfLink(e.Name()), link: l})
			continue
		}
		m, err := ebpf.LoadPinnedMap(p, nil)
		if err != nil {
			return fail(fmt.Errorf("open pinned %s: %w", p, err))
		}
		inst.maps[e.Name()] = m
	}
	meta, err := inst.Meta()
	if err != nil {
		return fail(fmt.Errorf("instance %q: %w", name, err))
	}
	// The configuration programs loaded later (a reload that adds a kind
	// of rule) are given, as the first ones were.
	inst.cfg = Config{Scopes: meta.Scopes, All: meta.All, Trace: meta.Trace, RingBytes: meta.RingBytes, RateLimit: meta.RateLimit, Object: meta.Object}
	if inst.cfg.RateLimit == 0 {
		inst.cfg.RateLimit = DefaultRateLimit // pinned by an assay that did not record it
	}
	spec, err := LoadSpec(meta.Object)
	if err != nil {
		return fail(err)
	}
	trimSpec(spec)
	spec.Maps[bpfMapEvents].MaxEntries = uint32(meta.RingBytes)
	spec.Maps[bpfMapTraceEvents].MaxEntries = uint32(os.Getpagesize())
	if meta.Trace {
		spec.Maps[bpfMapTraceEvents].MaxEntries = uint32(meta.RingBytes)
	}
	inst.spec = spec
	return inst, nil
}

func progOfLink(name string) string {
	n := strings.TrimPrefix(name, "link_")
	if i := strings.LastIndexByte(n, '_'); i > 0 && strings.Trim(n[i+1:], "0123456789") == "" {
		if _, ok := cgroupAttachTypes[n[:i]]; ok {
			return n[:i]
		}
	}
	return n
}

// Unpin detaches a pinned instance and removes its pins.
func (inst *Instance) Unpin() error {
	if inst.pinDir == "" {
		return errors.New("not pinned")
	}
	dir := inst.pinDir
	err := inst.Detach()
	inst.unpinAll(dir)
	inst.pinDir = ""
	return err
}

func (inst *Instance) unpinAll(dir string) {
	for _, l := range inst.links {
		l.link.Unpin()
	}
	for _, m := range inst.maps {
		m.Unpin()
	}
	os.RemoveAll(dir)
}

// ListPinned returns the names of the pinned instances.
func ListPinned() ([]string, error) {
	entries, err := os.ReadDir(PinRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}
