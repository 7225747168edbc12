// Package kafka is a pipeline sink that writes to Kafka: the most common
// Kafka job, read a topic, enrich or route each record, write the result to
// other topics. A Route turns each message into zero, one or many output
// records (topic, key, value, headers), adding them to an Outputs that the
// sink owns and reuses, so that a message of one output costs no
// allocation for routing; the sink returns, and so the message settles,
// only once every output is acknowledged.
//
//	w, err := kafka.NewWriter(kafka.Connection(conn)) // conn: the consumer's sluice.Connection
//	...
//	pipeline.Sink(orders, "enriched", kafka.Sink(w, func(m pipeline.Message[Order], out *kafka.Outputs) error {
//		out.Add("orders.enriched", m.Key(), enrich(m.Value()))
//		return nil
//	}))
//
// # Options of NewWriter
//
//	Connection(conn)     a client of the Writer's own on conn (sluice.Connection); or
//	Client(cl)           a client to share (acks=all, idempotent); or neither, for
//	                     consumer.ExactlyOnce's transactional client only
//	ClientOpts(opts...)  more franz-go options for the own client; default none
//	Provenance(header)   a header naming the input record; default none
//	ProduceTimeout(d)    how long a message waits for its outputs; default 30s
//
// NewWriter returns a *sluice.ConfigError naming the option at fault.
//
// # At least once
//
// A Writer with its own client (Connection), or one given (Client), produces with acks=all
// and the idempotent producer. A message settles, and its offset can be
// committed, only after every one of its outputs is acknowledged, so no
// output is lost; a message handled again (after a crash, a revoke past the
// drain timeout, or a retry after a failed write) writes its outputs again,
// so a reader may see duplicates.
//
// # Exactly once
//
// Pass the Writer to consumer.ExactlyOnce (and leave Connection out) and it
// writes through the consumer's transactional client instead: outputs and
// input offsets commit in one Kafka transaction, and a read_committed reader
// of the outputs sees each input record's outputs exactly once, across
// crashes, rebalances and broker faults. The consumer package documents how
// (a barrier every CommitInterval) and what it costs. A dlq.Publisher passed
// to consumer.ExactlyOnce too writes dead letters in the same transactions.
//
// # Errors and guards
//
// Sink's function has the shape of a pipeline sink and of a guarded handler,
// so handlers.Guard wraps it: a write failure (a broker down, a timeout) is
// transient and is retried by the guards; a record the brokers refuse for
// good (too large, not authorized, an invalid topic) and an error from Route
// are permanent (pipeline.Permanent) and dead-letter the message.
//
// # Headers
//
// Outputs carry the input record's trace context (traceparent and
// tracestate) unless Route sets it, and each output's context is the sink's,
// so a kotel hook on the writer's client (tracing.KafkaClient) links them to
// the sink's span. Provenance adds a header naming the input record.
package kafka
