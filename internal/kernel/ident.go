package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Ident is the identity the kernel gives the inode behind a descriptor:
// the key file rules are stored under (Dev, Ino), made by the same code
// as the hooks that look them up (bpf/file.h inode_key).
type Ident struct {
	Dev    uint32 // the key's device: i_sb->s_dev, or a btrfs subvolume's anonymous device
	Ino    uint64 // the key's inode number: i_ino
	SbDev  uint32 // i_sb->s_dev (kernel encoding)
	Magic  uint64 // i_sb->s_magic
	Mode   uint16 // i_mode
	FSType string // i_sb->s_type->name
	// OK is false when the kernel side cannot make a key for this inode
	// (a btrfs inode while the programs know no btrfs types).
	OK bool
}

// Filesystem magic numbers (include/uapi/linux/magic.h) that file rules
// care about.
const (
	MagicExt4     = 0xEF53
	MagicXFS      = 0x58465342
	MagicBtrfs    = 0x9123683E
	MagicTmpfs    = 0x01021994
	MagicOverlay  = 0x794C7630
	MagicF2FS     = 0xF2F52010
	MagicRamfs    = 0x858458F6
	MagicSquashfs = 0x73717368
	MagicEROFS    = 0xE0F5E1E2
	MagicSysfs    = 0x62656572
	MagicCgroup2  = 0x63677270
	MagicCgroup   = 0x27e0eb
	MagicProc     = 0x9FA0
)

var identProg struct {
	once sync.Once
	prog *ebpf.Program
	err  error
}

// identifyProgram loads the identify iterator once per process.
func identifyProgram() (*ebpf.Program, error) {
	identProg.once.Do(func() {
		removeMemlock()
		spec, err := embeddedSpec()
		if err != nil {
			identProg.err = err
			return
		}
		opts, err := programOptions()
		if err != nil {
			identProg.err = err
			return
		}
		prog, err := ebpf.NewProgramWithOptions(spec.Programs[bpfProgIdentify], opts)
		if err != nil {
			identProg.err = &FeatureError{Feature: "reading file identities from the kernel (BPF iterator task_file)", Err: err,
				Fix: "file rules need a kernel with BPF iterators and BTF (CONFIG_DEBUG_INFO_BTF=y, Linux 5.8 or later)"}
			return
		}
		identProg.prog = prog
	})
	return identProg.prog, identProg.err
}

// Identify returns, for each of fds (open descriptors of this process,
// typically O_PATH|O_NOFOLLOW ones of policy paths), the identity the
// kernel gives its inode. The descriptors must stay open until it returns.
func Identify(fds []int) ([]Ident, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	prog, err := identifyProgram()
	if err != nil {
		return nil, err
	}
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, &FeatureError{Feature: "reading file identities from the kernel (attach the task_file iterator)", Err: err}
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("read file identities: %w", err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read file identities: %w", err)
	}
	var rec bpfAssayIdent
	size := int(unsafe.Sizeof(rec))
	if len(data)%size != 0 {
		return nil, fmt.Errorf("read file identities: %d bytes is not a whole number of %d-byte records", len(data), size)
	}
	byFD := map[int]Ident{}
	for off := 0; off < len(data); off += size {
		if err := binary.Read(bytes.NewReader(data[off:off+size]), binary.NativeEndian, &rec); err != nil {
			return nil, fmt.Errorf("read file identities: %w", err)
		}
		name := make([]byte, 0, len(rec.Fstype))
		for _, c := range rec.Fstype {
			if c == 0 {
				break
			}
			name = append(name, byte(c))
		}
		byFD[int(rec.Fd)] = Ident{Dev: rec.Dev, Ino: rec.Ino, SbDev: rec.SbDev, Magic: rec.Magic,
			Mode: rec.Mode, FSType: string(name), OK: rec.Ok != 0}
	}
	out := make([]Ident, len(fds))
	for i, fd := range fds {
		id, ok := byFD[fd]
		if !ok {
			return nil, fmt.Errorf("read file identities: the kernel reported nothing for descriptor %d", fd)
		}
		out[i] = id
	}
	return out, nil
}
