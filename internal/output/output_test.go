package output

import "testing"

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"one\n", 3, "one"},
		{"a\nb\nc\nd\n", 2, "c\nd"},
		{"a\n\n  b  \n\n\n", 5, "a\nb"},
		{"a\r\nb\r\n", 1, "b"},
	}
	for _, tc := range tests {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
