// Package apikey mints herd's credentials (admin and worker keys,
// registration tokens, browser sessions) and hashes them for storage. It is
// the one place that decides what a key looks like and how it is stored; it
// does not store keys or decide who may use them (package api does).
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// New returns a random 256-bit key with a readable prefix.
func New(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash is how keys are stored: keys are 256-bit random, so a plain SHA-256 suffices.
func Hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
