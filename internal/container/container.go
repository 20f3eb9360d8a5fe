// Package container finds a running Docker or Podman container's init
// process through the engine's own command-line client, so that `assay
// monitor --container` can judge the container's cgroup and resolve policy
// paths as the container sees them (its mount namespace, through
// /proc/PID/root).
package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Container is a running container as its engine describes it.
type Container struct {
	Engine string // "podman" or "docker"
	ID     string
	Name   string
	PID    int // the container's init process, in the host's pid namespace
}

// Root is the container's root directory as seen from the host.
func (c *Container) Root() string { return fmt.Sprintf("/proc/%d/root", c.PID) }

func (c *Container) String() string {
	id := c.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("%s container %s (%s, init pid %d)", c.Engine, c.Name, id, c.PID)
}

// Engines are the clients tried, in order.
var Engines = []string{"podman", "docker"}

// inspectTimeout bounds one engine call (a hung daemon must not hang
// assay).
const inspectTimeout = 20 * time.Second

// Find looks ref (a name or an id, as the engine accepts it) up in every
// engine whose client is installed. Exactly one must know a running
// container by that reference.
func Find(ref string) (*Container, error) {
	if ref == "" {
		return nil, errors.New("empty container name")
	}
	var found []*Container
	var tried []string
	for _, engine := range Engines {
		path, err := exec.LookPath(engine)
		if err != nil {
			continue
		}
		c, err := inspect(path, engine, ref)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", engine, err))
			continue
		}
		found = append(found, c)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(tried) == 0 {
			return nil, fmt.Errorf("container %q: neither podman nor docker is installed (or on PATH)", ref)
		}
		return nil, fmt.Errorf("container %q not found: %s", ref, strings.Join(tried, "; "))
	}
	return nil, fmt.Errorf("container %q is ambiguous: both %s and %s know it; stop one or give a full id", ref, found[0], found[1])
}

func inspect(path, engine, ref string) (*Container, error) {
	ctx, cancel := context.WithTimeout(context.Background(), inspectTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "inspect", "--type", "container",
		"--format", "{{.Id}}\t{{.State.Pid}}\t{{.Name}}\t{{.State.Running}}", ref)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s inspect timed out after %v", engine, inspectTimeout)
		}
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, errors.New(firstLine(msg))
	}
	return parseInspect(engine, out.String())
}

// parseInspect reads the one line of `inspect --format` output.
func parseInspect(engine, s string) (*Container, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 1 {
		return nil, fmt.Errorf("%s inspect: %d containers match; give one name or id", engine, len(lines))
	}
	f := strings.Split(lines[0], "\t")
	if len(f) != 4 {
		return nil, fmt.Errorf("%s inspect: unexpected output %q", engine, lines[0])
	}
	if f[3] != "true" {
		return nil, fmt.Errorf("%s container %s is not running", engine, strings.TrimPrefix(f[2], "/"))
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("%s inspect: init pid %q", engine, f[1])
	}
	return &Container{Engine: engine, ID: f[0], Name: strings.TrimPrefix(f[2], "/"), PID: pid}, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
