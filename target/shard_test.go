package target_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"lab/target"
)

func TestShard(t *testing.T) {
	targets := func(n int) []target.Spec {
		var ts []target.Spec
		for i := range n {
			ts = append(ts, target.Spec{Name: fmt.Sprintf("t%d", i)})
		}
		return ts
	}
	names := func(ts []target.Spec) string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		n    int // targets selected
		spec string
		want string // names, or the error's text
		err  bool
	}{
		{4, "1/1", "t0,t1,t2,t3", false},
		{4, "1/2", "t0,t1", false},
		{4, "2/2", "t2,t3", false},
		{4, "1/3", "t0", false},
		{4, "2/3", "t1", false},
		{4, "3/3", "t2,t3", false},
		{5, "2/2", "t2,t3,t4", false},
		{3, "3/3", "t2", false},
		{3, "1/4", "3 targets cannot be split into 4 shards", true},
		{4, "0/2", "bad shard \"0/2\"", true},
		{4, "3/2", "bad shard \"3/2\"", true},
		{4, "1/0", "bad shard", true},
		{4, "2", "bad shard", true},
		{4, "a/b", "bad shard", true},
		{4, "1/2/3", "bad shard", true},
		{4, "", "bad shard", true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d targets, %s", tc.n, tc.spec), func(t *testing.T) {
			got, err := target.Shard(targets(tc.n), tc.spec)
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Shard = %s, %v; want an error containing %q", names(got), err, tc.want)
				}
				return
			}
			if err != nil || names(got) != tc.want {
				t.Errorf("Shard = %s, %v; want %s", names(got), err, tc.want)
			}
		})
	}
}

// TestShardsCoverSelection checks that the shards 1/n ... n/n of a
// selection, in order, are the selection: every target runs exactly once,
// and merging the shards in order restores the selection's order.
func TestShardsCoverSelection(t *testing.T) {
	for k := 1; k <= 9; k++ {
		var ts []target.Spec
		for i := range k {
			ts = append(ts, target.Spec{Name: fmt.Sprint(i)})
		}
		for n := 1; n <= k; n++ {
			var joined []target.Spec
			for i := 1; i <= n; i++ {
				s, err := target.Shard(ts, fmt.Sprintf("%d/%d", i, n))
				if err != nil {
					t.Fatal(err)
				}
				if len(s) < k/n || len(s) > k/n+1 {
					t.Errorf("%d targets, shard %d/%d has %d: uneven", k, i, n, len(s))
				}
				joined = append(joined, s...)
			}
			if !reflect.DeepEqual(joined, ts) {
				t.Errorf("%d targets in %d shards: joined shards are not the selection", k, n)
			}
		}
	}
}
