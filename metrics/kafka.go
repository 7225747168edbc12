package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// KafkaClient returns the option that instruments a franz-go client with
// plugin/kprom on m's registry, under the namespace sluice_kafka and with the
// constant label client=role, for example "consumer" (pass it through
// consumer.ClientOpts) or "dlq" (a dead-letter publisher's own client,
// through dlq.ClientOpts). Give each client of the process its own role:
// the metrics of a second client with a taken role are not registered (a
// warning is logged). The metrics are registered when the client is created
// and unregistered when it is closed; kprom documents them. Besides kprom's
// defaults, fetch and produce metrics count records, batches and
// compressed bytes too, and use kprom's consistent names
// (..._uncompressed_bytes_total). opts are applied after these and may
// override them.
func (m *Metrics) KafkaClient(role string, opts ...kprom.Opt) kgo.Opt {
	base := []kprom.Opt{
		kprom.Registerer(m.reg),
		kprom.WithStaticLabel(prometheus.Labels{LabelClient: role}),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches,
			kprom.UncompressedBytes, kprom.CompressedBytes, kprom.ConsistentNaming),
	}
	return kgo.WithHooks(kprom.NewMetrics(KafkaNamespace, append(base, opts...)...))
}
