package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAllowedRegions(t *testing.T) {
	for _, c := range []struct {
		name string
		flag []string
		want []string
		bad  bool
	}{
		{name: "sorted and deduplicated", flag: []string{"us-east-1", "eu-west-1", "us-east-1"}, want: []string{"eu-west-1", "us-east-1"}},
		{name: "spaces trimmed", flag: []string{" eu-west-1", "us-east-1 "}, want: []string{"eu-west-1", "us-east-1"}},
		{name: "missing", bad: true},
		{name: "empty entry", flag: []string{"us-east-1", ""}, bad: true},
		{name: "unknown", flag: []string{"us-east-1", "mars-1"}, bad: true},
		{name: "upper case", flag: []string{"US-EAST-1"}, bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := allowedRegions(c.flag)
			if (err != nil) != c.bad {
				t.Fatalf("error %v, want error %v", err, c.bad)
			}
			if diff := cmp.Diff(c.want, got); !c.bad && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
