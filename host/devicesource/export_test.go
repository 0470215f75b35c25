package devicesource

// AfterRound makes s call fn after every discovery attempt of its Watch, with
// the attempt's error. Set it before Watch starts.
func AfterRound(s *Source, fn func(error)) { s.afterRound = fn }
