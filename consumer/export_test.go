package consumer

// AllPaused reports whether the consumer-wide high-water mark paused every
// partition's fetching.
func (c *Consumer) AllPaused() bool { return c.flow.allPaused.Load() }
