package shell

import (
	"os/exec"
	"testing"
)

// TestQuote checks a real sh reads each quoted word back as it was.
func TestQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "with space", "it's", `"$HOME" \n ; rm -rf /`, "a\nb"} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Errorf("sh read %q back as %q", s, out)
		}
	}
}
