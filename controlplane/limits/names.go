package limits

import (
	"strconv"
	"strings"
)

// parseCounterName splits a counterName.
func parseCounterName(name string, principal, server, id, window *string, start *int64) bool {
	parts := strings.Split(name, "/")
	if len(parts) != 5 {
		return false
	}
	s, err := strconv.ParseInt(parts[4], 10, 64)
	if err != nil {
		return false
	}
	*principal, *server, *id, *window, *start = parts[0], parts[1], parts[2], parts[3], s
	return true
}
