// Package schema holds the JSON Schema of assay's NDJSON output
// (events.schema.json, draft 2020-12) and validates lines against it. The
// "schema" field of every line is the version it follows
// (events.SchemaVersion).
package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON is the schema document.
//
//go:embed events.schema.json
var JSON []byte

var (
	once     sync.Once
	compiled *jsonschema.Schema
	cerr     error
)

func load() (*jsonschema.Schema, error) {
	once.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSON))
		if err != nil {
			cerr = fmt.Errorf("events.schema.json: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		const url = "events.schema.json"
		if err := c.AddResource(url, doc); err != nil {
			cerr = err
			return
		}
		compiled, cerr = c.Compile(url)
	})
	return compiled, cerr
}

// Validate checks one output line (a JSON object) against the schema.
func Validate(line []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	if !json.Valid(line) {
		return fmt.Errorf("not JSON: %.200q", line)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s: %v", bytes.TrimSpace(line), err)
	}
	return nil
}
