package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sizeFlag is a size in bytes: a bare number is bytes; K, M, G (or KiB,
// MiB, GiB) are binary multiples (1M = 1048576). Decimal units (KB, MB,
// GB) are refused: ring buffers are powers of two.
type sizeFlag int64

func (s *sizeFlag) Type() string { return "SIZE" }
func (s *sizeFlag) String() string {
	if *s == 0 {
		return ""
	}
	return formatSize(int64(*s))
}
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("%q is not a size: use bytes (a bare number) or K, M, G (KiB, MiB, GiB), e.g. 16M", v)
	}
	mult := int64(1)
	switch strings.ToLower(unit) {
	case "", "b":
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "kb", "mb", "gb":
		return 0, fmt.Errorf("%q: decimal units are not accepted (sizes are powers of two): use %s, e.g. 16MiB", v, strings.ToUpper(unit[:1])+"iB")
	default:
		return 0, fmt.Errorf("%q: unknown unit %q: use bytes (a bare number) or K, M, G (KiB, MiB, GiB)", v, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// durationFlag is a Go duration (5s, 2m, 1h30m, 500ms); a bare number is
// seconds.
type durationFlag time.Duration

func (d *durationFlag) Type() string { return "DURATION" }
func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}
func (d *durationFlag) Set(v string) error {
	t := strings.TrimSpace(v)
	if n, err := strconv.ParseUint(t, 10, 32); err == nil {
		*d = durationFlag(time.Duration(n) * time.Second)
		return nil
	}
	x, err := time.ParseDuration(t)
	if err != nil {
		return fmt.Errorf("%q is not a duration: use a number of seconds or a unit, e.g. 30s, 2m, 1h", v)
	}
	if x < 0 {
		return fmt.Errorf("%q: a duration cannot be negative", v)
	}
	*d = durationFlag(x)
	return nil
}
