package cuda

import "dlf/tensor"

// Backend implements tensor.Backend.
var _ tensor.Backend = (*Backend)(nil)
