package deployed

import (
	"testing"
	"time"
)

// TestParseSchedule: the expressions EventBridge takes are read, those it
// refuses are refused (and the unsupported cron forms say so).
func TestParseSchedule(t *testing.T) {
	anchor := time.Date(2026, 1, 5, 12, 0, 30, 0, time.UTC)
	for _, c := range []struct {
		expr string
		ok   bool
	}{
		{"rate(1 minute)", true},
		{"rate(5 minutes)", true},
		{"rate(1 hour)", true},
		{"rate(2 days)", true},
		{"rate(1 minutes)", false},
		{"rate(2 minute)", false},
		{"rate(0 minutes)", false},
		{"rate(minute)", false},
		{"rate(1 week)", false},
		{"cron(17 3 * * ? *)", true},
		{"cron(0/15 * ? * MON-FRI *)", true},
		{"cron(0 8 1 JAN,JUL ? 2026-2030)", true},
		{"cron(17 3 * * * *)", false},
		{"cron(17 3 ? * ? *)", false},
		{"cron(17 3 * *)", false},
		{"cron(60 3 * * ? *)", false},
		{"cron(0 12 L * ? *)", false},
		{"cron(0 12 ? * 6#3 *)", false},
		{"at(2026-01-01T00:00:00)", false},
	} {
		t.Run(c.expr, func(t *testing.T) {
			_, err := ParseSchedule(c.expr, anchor)
			if (err == nil) != c.ok {
				t.Errorf("ParseSchedule(%q) = %v, want ok %v", c.expr, err, c.ok)
			}
		})
	}
}

// TestScheduleNext: when each expression fires next, in UTC.
func TestScheduleNext(t *testing.T) {
	anchor := time.Date(2026, 1, 5, 12, 0, 30, 0, time.UTC) // a Monday
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		expr, after, want string
	}{
		{"rate(1 minute)", "2026-01-05T12:00:30Z", "2026-01-05T12:01:30Z"},
		{"rate(1 minute)", "2026-01-05T12:05:00Z", "2026-01-05T12:05:30Z"},
		{"rate(1 minute)", "2026-01-05T11:00:00Z", "2026-01-05T12:01:30Z"},
		{"rate(2 hours)", "2026-01-05T13:00:00Z", "2026-01-05T14:00:30Z"},
		{"cron(17 3 * * ? *)", "2026-01-05T12:00:30Z", "2026-01-06T03:17:00Z"},
		{"cron(17 3 * * ? *)", "2026-01-06T03:16:59Z", "2026-01-06T03:17:00Z"},
		{"cron(17 3 * * ? *)", "2026-01-06T03:17:00Z", "2026-01-07T03:17:00Z"},
		{"cron(0/15 * ? * MON-FRI *)", "2026-01-09T23:50:00Z", "2026-01-12T00:00:00Z"}, // Friday night to Monday
		{"cron(0/15 * ? * MON-FRI *)", "2026-01-05T12:00:30Z", "2026-01-05T12:15:00Z"},
		{"cron(0 8 1 JAN,JUL ? 2026-2030)", "2026-01-05T12:00:30Z", "2026-07-01T08:00:00Z"},
		{"cron(0 0 31 * ? *)", "2026-02-01T00:00:00Z", "2026-03-31T00:00:00Z"},
		{"cron(0 0 ? * SUN *)", "2026-01-05T12:00:30Z", "2026-01-11T00:00:00Z"},
	} {
		t.Run(c.expr+" after "+c.after, func(t *testing.T) {
			s, err := ParseSchedule(c.expr, anchor)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.Next(at(c.after))
			if !ok || !got.Equal(at(c.want)) {
				t.Errorf("Next = %s (%v), want %s", got.Format(time.RFC3339), ok, c.want)
			}
		})
	}
	over, err := ParseSchedule("cron(0 0 1 1 ? 2026)", anchor)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := over.Next(at("2026-06-01T00:00:00Z")); ok {
		t.Errorf("a cron whose only year is over fires at %s", got)
	}
}
