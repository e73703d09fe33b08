package ng

import (
	"errors"
	"reflect"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want any
		rest string
	}{
		{"4:spam", "spam", ""},
		{"0:", "", ""},
		{"i42e", int64(42), ""},
		{"i-3e", int64(-3), ""},
		{"i0e", int64(0), ""},
		{"l4:spami7ee", []any{"spam", int64(7)}, ""},
		{"le", []any{}, ""},
		{"d3:cow3:moo4:spam4:eggse", map[string]any{"cow": "moo", "spam": "eggs"}, ""},
		// rtpengine and Kamailio send keys unsorted.
		{"d7:command5:offer7:call-id3:abc8:from-tag1:fe", map[string]any{"command": "offer", "call-id": "abc", "from-tag": "f"}, ""},
		{"d4:listl1:a1:bee", map[string]any{"list": []any{"a", "b"}}, ""},
		{"5:a\x00b\xffcXY", "a\x00b\xffc", "XY"},
	}
	for _, tt := range tests {
		got, rest, err := Decode([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) || string(rest) != tt.rest {
			t.Errorf("Decode(%q) = %#v, %q, %v", tt.in, got, rest, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{"", "i", "ie", "i1", "i-0e", "i03e", "ixe", "5:abc", "-1:", "03:abc", "x", "l", "l4:spam",
		"d", "di1e1:ae", "d1:a", "d1:ai1e1:ai2ee", "d1:a", "99999999999999999999:x",
		string(make([]byte, 40, 40)),
	} {
		if _, _, err := Decode([]byte(in)); !errors.Is(err, ErrBencode) {
			t.Errorf("Decode(%q): %v, want ErrBencode", in, err)
		}
	}
	deep := ""
	for range 100 {
		deep += "l"
	}
	if _, _, err := Decode([]byte(deep)); !errors.Is(err, ErrBencode) {
		t.Errorf("100 nested lists: %v", err)
	}
}

func TestEncodeSortsKeys(t *testing.T) {
	b, err := Encode(map[string]any{"sdp": "v=0", "result": "ok", "list": []any{int64(1), "x"}, "n": 5})
	if err != nil {
		t.Fatal(err)
	}
	if want := "d4:listli1e1:xe1:ni5e6:result2:ok3:sdp3:v=0e"; string(b) != want {
		t.Errorf("Encode = %q, want %q", b, want)
	}
}

func TestMessage(t *testing.T) {
	cookie, d, err := ParseMessage([]byte("5323_1 d7:command4:pinge"))
	if err != nil || cookie != "5323_1" || d["command"] != "ping" {
		t.Fatalf("ParseMessage: %q %v %v", cookie, d, err)
	}
	for _, in := range []string{"", "nocookie", " d4:xe", "c li1ee", "c d7:command4:pinge trailing"} {
		if _, _, err := ParseMessage([]byte(in)); err == nil {
			t.Errorf("ParseMessage(%q) accepted", in)
		}
	}
	b, _ := Message("c1", map[string]any{"result": "pong"})
	if string(b) != "c1 d6:result4:ponge" {
		t.Errorf("Message = %q", b)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"d7:command5:offer7:call-id3:abc8:from-tag1:fe", "l4:spami7ee", "i42e", "d1:ad1:bl1:cee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes must encode, and decode back to the same value.
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", v, err)
		}
		w, rest, err := Decode(enc)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip of %q: %#v → %q → %#v (%v)", b, v, enc, w, err)
		}
	})
}
