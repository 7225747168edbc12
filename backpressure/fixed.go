package backpressure

// Fixed is a bulkhead: a limiter whose limit never changes.
type Fixed struct {
	core
}

// NewFixed returns a limiter allowing limit calls at once (limit >= 1), or
// a *sluice.ConfigError naming limit or the first invalid option.
func NewFixed(limit int, opts ...Opt) (*Fixed, error) {
	cf := defaultCfg()
	for _, o := range opts {
		o.apply(&cf)
	}
	if limit < 1 {
		return nil, configErr("limit", "", limit, "must be at least 1")
	}
	if err := cf.validateCommon(); err != nil {
		return nil, err
	}
	l := &Fixed{}
	l.init(&cf, limit)
	return l, nil
}
