package pluginmanager

import "time"

// Plugin states, as PluginStatus reports them.
const (
	StateRegistered  = "registered"
	StateRegistering = "registering"
	StateFailing     = "failing"
	StateWaiting     = "waiting"
	StateLeaving     = "deregistering"
)

// PluginStatus is what the plugin manager knows of one plugin socket: what
// the plugin said of itself, what its handler made of it, and how its
// registration goes.
type PluginStatus struct {
	SocketPath string
	State      string
	Type       string
	Name       string
	Endpoint   string
	Versions   []string
	Handler    string
	Action     string
	Resource   string
	Attributes map[string]string
	SeenAt     time.Time
	Registered time.Time
	Failures   int
	LastError  string
	NextRetry  time.Time
	Waiting    string
}

// Plugins lists every plugin socket that is desired or registered: which are
// registered, which are failing (with the last error and the next retry) and
// which wait for a handler.
func (m *Manager) Plugins() []PluginStatus {
	byPath := map[string]*PluginStatus{}
	var order []string
	get := func(path string) *PluginStatus {
		if s, ok := byPath[path]; ok {
			return s
		}
		s := &PluginStatus{SocketPath: path}
		byPath[path] = s
		order = append(order, path)
		return s
	}
	for _, d := range m.desired.List() {
		s := get(d.SocketPath)
		s.SeenAt, s.State = d.AddedAt, StateRegistering
		m.seenMu.Lock()
		if info, ok := m.seen[d.SocketPath]; ok {
			s.Type, s.Name, s.Endpoint, s.Versions = info.Type, info.Name, info.Endpoint, info.Versions
		}
		m.seenMu.Unlock()
	}
	for _, r := range m.actual.List() {
		s := get(r.SocketPath)
		p, reg := r.Plugin, r.Registration
		s.Type, s.Name, s.Endpoint, s.Versions = p.Type, p.Name, p.Endpoint, p.Versions
		s.Handler, s.Action, s.Resource, s.Attributes, s.Registered = reg.Handler, reg.Action, reg.Resource, reg.Attributes, r.Registered
		if reg.Endpoint != "" {
			s.Endpoint = reg.Endpoint
		}
		if d, ok := m.desired.Get(r.SocketPath); ok && d.Generation == r.Generation {
			s.State = StateRegistered
		} else {
			s.State = StateLeaving
		}
	}
	out := make([]PluginStatus, 0, len(order))
	for _, path := range order {
		s := byPath[path]
		if st, ok := m.exec.Status(path); ok && s.State == StateRegistering {
			s.Failures = st.Failures
			if st.LastError != nil {
				s.LastError = st.LastError.Error()
			}
			s.NextRetry, s.Waiting = st.NextRetry, st.Waiting
			switch {
			case st.Running != "": // registering
			case st.Waiting != "":
				s.State = StateWaiting
			case st.Failures > 0:
				s.State = StateFailing
			}
		}
		out = append(out, *s)
	}
	return out
}
