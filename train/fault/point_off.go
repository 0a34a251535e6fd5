//go:build !faultinject

package fault

// Point marks a place where a fault-injection test may stop the process; without the faultinject
// build tag it does nothing.
func Point(phase string) {}

// Enabled reports whether this binary was built with fault injection.
const Enabled = false
