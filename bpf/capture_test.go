package bpf

import "testing"

// TestEncodeHeaders: a header capture's layout in off[]: inline headers
// (kafka-go's) take one hop at most, their stride in off[2]; pointers to
// headers (sarama's) take two, the field in off[2], the stride implied.
func TestEncodeHeaders(t *testing.T) {
	inline, err := encodeCapture(Capture{Kind: CapHdrs, Hops: []uint16{16}, Field: 88, Stride: 40, ValueAt: 16})
	if err != nil || inline.Nhops != 1 || inline.Off != [MaxHops + 1]uint16{16, 88, 40, 16} {
		t.Errorf("inline headers: %+v, %v", inline, err)
	}
	ptrs, err := encodeCapture(Capture{Kind: CapHdrs, Hops: []uint16{8, 0}, Field: 0, Size: 8, Stride: 8, ValueAt: 24})
	if err != nil || ptrs.Nhops != 2 || ptrs.Size != 8 || ptrs.Off != [MaxHops + 1]uint16{8, 0, 0, 24} {
		t.Errorf("header pointers: %+v, %v", ptrs, err)
	}
	for what, c := range map[string]Capture{
		"inline, two hops":         {Kind: CapHdrs, Hops: []uint16{8, 0}, Stride: 40},
		"pointers, three hops":     {Kind: CapHdrs, Hops: []uint16{8, 0, 0}, Size: 8, Stride: 8},
		"pointers, another stride": {Kind: CapHdrs, Size: 8, Stride: 16},
		"a path of four hops":      {Kind: CapPath, Hops: []uint16{0, 0, 0, 0}},
	} {
		if _, err := encodeCapture(c); err == nil {
			t.Errorf("%s: encoded", what)
		}
	}
}
