package pluginmanager

// What the manager keeps inside, for the tests in package pluginmanager_test.

// RegisteredSockets lists the sockets in the actual state of the world.
func (m *Manager) RegisteredSockets() []string {
	var out []string
	for _, r := range m.actual.List() {
		out = append(out, r.SocketPath)
	}
	return out
}

// SeenCount is how many GetInfo answers the manager keeps.
func (m *Manager) SeenCount() int {
	m.seenMu.Lock()
	defer m.seenMu.Unlock()
	return len(m.seen)
}
