// Package vmafmodel carries Netflix's VMAF v0.6.1 model in the format
// libvmaf 1.x reads (a .pkl file and the .pkl.model beside it), for a
// measuring ffmpeg of that generation when the operator names no model
// file (--vmaf-model). Modern libvmaf has the model built in. The files
// are Netflix's, under the BSD-2-Clause-Patent license in LICENSE.
package vmafmodel

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed vmaf_v0.6.1.pkl vmaf_v0.6.1.pkl.model LICENSE
var files embed.FS

// Name is the model's file name.
const Name = "vmaf_v0.6.1.pkl"

// Write puts the model's files in dir (made if missing) and returns the
// path of its .pkl file. A file that holds them already is left alone, and
// one written is renamed into place whole: a measuring ffmpeg reading the
// model meanwhile never sees half of it.
func Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, name := range []string{Name, Name + ".model", "LICENSE"} {
		b, err := files.ReadFile(name)
		if err != nil {
			return "", err
		}
		if err := put(filepath.Join(dir, name), b); err != nil {
			return "", fmt.Errorf("write the VMAF model: %w", err)
		}
	}
	return filepath.Join(dir, Name), nil
}

// put makes the file at p hold b.
func put(p string, b []byte) error {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".model-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
