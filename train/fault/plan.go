package fault

import (
	"fmt"
	"strconv"
	"strings"
)

// Plan is a parsed DLF_FAULT: stop at the Hit-th time Phase is reached, by Kind ("kill",
// "interrupt" or "stop").
type Plan struct {
	Phase, Kind string
	Hit         int
}

// ParsePlan parses "phase:kill|interrupt|stop[:hit]" (hit defaults to 1); "" is no plan.
func ParsePlan(s string) (*Plan, error) {
	if s == "" {
		return nil, nil
	}
	f := strings.Split(s, ":")
	if len(f) < 2 || len(f) > 3 || f[0] == "" || (f[1] != "kill" && f[1] != "interrupt" && f[1] != "stop") {
		return nil, fmt.Errorf("DLF_FAULT=%q: want phase:kill|interrupt|stop[:hit]", s)
	}
	p := &Plan{Phase: f[0], Kind: f[1], Hit: 1}
	if len(f) == 3 {
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("DLF_FAULT=%q: hit %q is not a positive integer", s, f[2])
		}
		p.Hit = n
	}
	return p, nil
}
