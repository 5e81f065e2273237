package store

// OnChange registers f to run, under the cache lock, for every watched
// change (obj is nil on delete); f must not call back into the store. Only
// tests observe the watch this way.
func (s *Store) OnChange(f func(kind, name string, obj any)) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	s.cache.onApply = append(s.cache.onApply, f)
}
