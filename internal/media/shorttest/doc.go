// Package shorttest runs short, late-starting and single-frame sources
// through the media pipeline (admit, plan, encode, verify) with every
// built-in profile and checks the pictures the encode makes. It holds only
// tests, kept apart so that they do not slow the media package's own.
package shorttest
