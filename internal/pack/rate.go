package pack

import "math"

// PeakRate is the peak segment bit rate of RFC 8216bis §4.3.4.2 ("the
// largest bit rate of any contiguous set of segments whose total duration is
// between 0.5 and 1.5 times the target duration"; a set's rate is its bytes
// over its duration), in bits/s, rounded up. sizes and seconds are per
// segment. A stream shorter than half the target duration counts whole.
func PeakRate(sizes []int64, seconds []float64, target float64) int64 {
	lo, hi := 0.5*target, 1.5*target
	var peak float64
	var all, allBytes float64
	for i := range sizes {
		all += seconds[i]
		allBytes += float64(sizes[i])
		var d, b float64
		for j := i; j < len(sizes); j++ {
			d += seconds[j]
			b += float64(sizes[j])
			if d > hi+1e-9 {
				break
			}
			if d >= lo-1e-9 && d > 0 {
				peak = math.Max(peak, b*8/d)
			}
		}
	}
	if peak == 0 && all > 0 {
		peak = allBytes * 8 / all
	}
	return int64(math.Ceil(peak))
}

// AverageRate is the bytes of all segments over their duration, in bits/s,
// rounded up.
func AverageRate(sizes []int64, seconds []float64) int64 {
	var b, d float64
	for i := range sizes {
		b += float64(sizes[i])
		d += seconds[i]
	}
	if d == 0 {
		return 0
	}
	return int64(math.Ceil(b * 8 / d))
}

// rates are a stream's segment sizes and durations, for the whole segments
// or for the I-frame byte ranges.
func (s *Stream) rates(iframes bool) ([]int64, []float64) {
	sizes := make([]int64, len(s.Segments))
	secs := make([]float64, len(s.Segments))
	for i, g := range s.Segments {
		sizes[i] = g.Size
		if iframes {
			sizes[i] = g.KeyEnd - g.Moof
		}
		// As the playlist writes it (microseconds), so that anyone who
		// measures from the playlist finds the same rates.
		secs[i] = math.Round(s.SegmentSeconds(i)*1e6) / 1e6
	}
	return sizes, secs
}

// Peak is the stream's peak segment bit rate for a target duration in
// seconds; with iframes, that of its I-frame byte ranges.
func (s *Stream) Peak(target float64, iframes bool) int64 {
	sizes, secs := s.rates(iframes)
	return PeakRate(sizes, secs, target)
}

// Average is the stream's average segment bit rate; with iframes, that of
// its I-frame byte ranges.
func (s *Stream) Average(iframes bool) int64 {
	sizes, secs := s.rates(iframes)
	return AverageRate(sizes, secs)
}
