package pack

import (
	"errors"
	"fmt"
)

// AV1 OBU types (AV1 specification §6.2.2) that the key-frame check reads.
const (
	obuSequenceHeader = 1
	obuFrameHeader    = 3
	obuFrame          = 6
)

// av1KeyFrame says whether an AV1 sample (a temporal unit of OBUs, in the
// low-overhead bitstream format AV1-ISOBMFF requires) starts with a shown
// KEY_FRAME: the closed GOP that every segment must start with. A sync
// sample may also be a forward key frame shown again (show_existing_frame),
// whose following frames may reference frames before it. mp4ff reads the
// av1C box but not OBUs, so this reads the few header bits it needs.
func av1KeyFrame(sample []byte) error {
	reduced := false
	for len(sample) > 0 {
		h := sample[0]
		if h&0x80 != 0 {
			return errors.New("AV1 OBU header has its forbidden bit set")
		}
		typ, ext, hasSize := h>>3&0x0f, h&0x04 != 0, h&0x02 != 0
		n := 1
		if ext {
			n++
		}
		if len(sample) < n {
			return errors.New("AV1 OBU header is cut short")
		}
		size := len(sample) - n
		if hasSize {
			v, m, err := leb128(sample[n:])
			if err != nil {
				return err
			}
			n += m
			if v > uint64(len(sample)-n) { //nolint:gosec // G115: a length is never negative
				return fmt.Errorf("AV1 OBU of %d bytes is longer than its sample", v)
			}
			size = int(v) //nolint:gosec // G115: bounded by the sample's length just above
		}
		payload := sample[n : n+size]
		sample = sample[n+size:]
		switch typ {
		case obuSequenceHeader:
			// seq_profile (3), still_picture (1), reduced_still_picture_header (1).
			if len(payload) == 0 {
				return errors.New("AV1 sequence header is empty")
			}
			reduced = payload[0]&0x08 != 0
		case obuFrameHeader, obuFrame:
			if reduced {
				return nil // a reduced still picture header is a shown key frame
			}
			if len(payload) == 0 {
				return errors.New("AV1 frame header is empty")
			}
			// show_existing_frame (1), frame_type (2), show_frame (1).
			b := payload[0]
			if b&0x80 != 0 {
				return errors.New("first frame shows an earlier frame again (a forward key frame): want a KEY_FRAME that starts a closed GOP at every segment start")
			}
			if frameType := b >> 5 & 0x03; frameType != 0 {
				return fmt.Errorf("first frame is not a KEY_FRAME (frame_type %d): want a closed GOP at every segment start", frameType)
			}
			if b&0x10 == 0 {
				return errors.New("first key frame is not shown: want a shown KEY_FRAME at every segment start")
			}
			return nil
		}
	}
	return errors.New("AV1 sample holds no frame")
}

// leb128 reads an unsigned LEB128 number of at most 8 bytes (AV1 §4.10.5).
func leb128(b []byte) (v uint64, n int, err error) {
	for i := range 8 {
		if i >= len(b) {
			return 0, 0, errors.New("AV1 OBU size is cut short")
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("AV1 OBU size is longer than 8 bytes")
}
