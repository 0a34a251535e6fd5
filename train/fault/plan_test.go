package fault

import (
	"strings"
	"testing"
)

// TestParsePlan checks DLF_FAULT's forms and that every malformed one is refused, quoting it.
func TestParsePlan(t *testing.T) {
	for in, want := range map[string]Plan{
		"step:kill":               {Step, "kill", 1},
		"ckpt_synced:interrupt:4": {CheckpointSynced, "interrupt", 4},
		"rank_step1:kill:12":      {RankStep + "1", "kill", 12},
		"rank_step1:stop:3":       {RankStep + "1", "stop", 3},
	} {
		p, err := ParsePlan(in)
		if err != nil || p == nil || *p != want {
			t.Errorf("ParsePlan(%q) = %+v, %v; want %+v", in, p, err, want)
		}
	}
	if p, err := ParsePlan(""); p != nil || err != nil {
		t.Errorf(`ParsePlan("") = %+v, %v`, p, err)
	}
	for _, bad := range []string{"step", "step:halt", ":kill", "step:kill:0", "step:kill:x", "a:kill:1:2"} {
		if _, err := ParsePlan(bad); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParsePlan(%q): %v, want an error quoting it", bad, err)
		}
	}
}
