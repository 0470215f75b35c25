//go:build !race

package registration

const raceEnabled = false
