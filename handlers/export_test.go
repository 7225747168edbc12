package handlers

import "context"

// BreakerAlone is the breaker guard of opts (Breaker) around sink without
// the retry layer, for tests of the breaker's own counting and state
// changes: Guard's retry layer waits out an outage, which would hide them.
func BreakerAlone[M any](sink func(context.Context, M) error, opts ...Opt) (func(context.Context, M) error, error) {
	c, err := newCfg(opts)
	if err != nil {
		return nil, err
	}
	b, err := newBreaker(c, *c.breaker)
	if err != nil {
		return nil, err
	}
	s := breakerLayer[M](b)(sinkStep(sink))
	return func(ctx context.Context, m M) error {
		_, err := s(ctx, m, attempt{})
		return err
	}, nil
}
