// Package metricstest reads Prometheus metrics in tests: a Snapshot of a
// Gatherer, or of a /metrics page, that tests compare before and after the
// code under test ran, to assert that metrics moved rather than merely
// exist.
package metricstest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Snapshot holds the value of every series at one moment, keyed by the
// series as Prometheus writes it: name{label="value",...} with the labels
// sorted, or the bare name for a series without labels. A histogram
// contributes name_count and name_sum series (not its buckets), a summary
// the same.
type Snapshot map[string]float64

// Take gathers g.
func Take(g prometheus.Gatherer) (Snapshot, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	return fromFamilies(mfs), nil
}

// Parse reads a /metrics page in the Prometheus text format.
func Parse(r io.Reader) (Snapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		mfs = append(mfs, mf)
	}
	return fromFamilies(mfs), nil
}

func fromFamilies(mfs []*dto.MetricFamily) Snapshot {
	s := Snapshot{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			labels := labelString(m.GetLabel())
			switch {
			case m.Counter != nil:
				s[name+labels] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s[name+labels] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				s[name+labels] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				s[name+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				s[name+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			case m.Summary != nil:
				s[name+"_count"+labels] = float64(m.GetSummary().GetSampleCount())
				s[name+"_sum"+labels] = m.GetSummary().GetSampleSum()
			}
		}
	}
	return s
}

func labelString(lps []*dto.LabelPair) string {
	if len(lps) == 0 {
		return ""
	}
	pairs := make([]string, len(lps))
	for i, lp := range lps {
		pairs[i] = fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue())
	}
	sort.Strings(pairs)
	return "{" + strings.Join(pairs, ",") + "}"
}

// Key returns the key of series name with the given label name/value pairs,
// in any order: Key("x_total", "sink", "store") is `x_total{sink="store"}`.
func Key(name string, labels ...string) string {
	if len(labels)%2 != 0 {
		panic("metricstest: Key needs label name/value pairs")
	}
	lps := make([]*dto.LabelPair, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		lps = append(lps, &dto.LabelPair{Name: &labels[i], Value: &labels[i+1]})
	}
	return name + labelString(lps)
}

// Value is the value of one series (0 if absent).
func (s Snapshot) Value(name string, labels ...string) float64 { return s[Key(name, labels...)] }

// Has reports whether the snapshot has a series of the metric name (for a
// histogram, name_count).
func (s Snapshot) Has(name string) bool {
	for k := range s {
		if family(k) == name || family(k) == name+"_count" {
			return true
		}
	}
	return false
}

// Total sums every series of name whose labels include the given label
// name/value pairs (all series of name when none are given).
func (s Snapshot) Total(name string, labels ...string) float64 {
	var want []string
	for i := 0; i+1 < len(labels); i += 2 {
		want = append(want, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	total := 0.0
	for k, v := range s {
		if family(k) != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(k, "{"+w) && !strings.Contains(k, ","+w) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// Series lists the keys of the series of name, sorted.
func (s Snapshot) Series(name string) []string {
	var keys []string
	for k := range s {
		if family(k) == name {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Families lists the metric names in the snapshot, sorted (histograms as
// name_count and name_sum).
func (s Snapshot) Families() []string {
	set := map[string]bool{}
	for k := range s {
		set[family(k)] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func family(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		return key[:i]
	}
	return key
}
