package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/sluice-go/sluice/internal/demo"
	"github.com/sluice-go/sluice/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository root, where docker-compose.yml is.
const root = ".."

type compose struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
}

type service struct {
	Image    string `yaml:"image"`
	Hostname string `yaml:"hostname"`
	Build    *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	Restart     string            `yaml:"restart"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
}

// decodeYAML decodes a YAML file strictly: an unknown key (a typo) fails.
func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	decodeYAML(t, filepath.Join(root, "docker-compose.yml"), &c)
	return c
}

// flag returns the value of --name=value in args.
func flag(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// mount returns the container path at which host path src (relative to the
// repository root) is mounted, and checks that src exists.
func mount(t *testing.T, s service, src string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if filepath.Clean(parts[0]) == filepath.Clean(src) && len(parts) >= 2 {
			return parts[1]
		}
	}
	t.Fatalf("%s is not mounted (volumes %v)", src, s.Volumes)
	return ""
}

func exists(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, path)); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"kafka", "demo", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("service %s missing; services: %v", name, slices.Sorted(func(yield func(string) bool) {
				for k := range c.Services {
					if !yield(k) {
						return
					}
				}
			}))
		}
	}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == nil) {
			t.Errorf("service %s: want exactly one of image and build", name)
		}
		if strings.Contains(s.Image, "zookeeper") {
			t.Errorf("service %s runs ZooKeeper; Kafka must run in KRaft mode", name)
		}
		for _, v := range s.Volumes {
			exists(t, strings.Split(v, ":")[0])
		}
		for _, p := range s.Ports {
			host, ctr, ok := strings.Cut(p, ":")
			if !ok || host == "" || ctr == "" {
				t.Errorf("service %s: port %q is not HOST:CONTAINER", name, p)
			}
		}
		for _, dep := range dependsOn(t, s.DependsOn) {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not a service", name, dep)
			}
		}
	}

	kafka := c.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka image %q: want the official apache/kafka image", kafka.Image)
	}
	env := kafka.Environment
	if !strings.Contains(env["KAFKA_PROCESS_ROLES"], "controller") || env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "" {
		t.Errorf("kafka is not a KRaft controller: roles %q, voters %q", env["KAFKA_PROCESS_ROLES"], env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
	}
	if kafka.Healthcheck == nil {
		t.Error("kafka has no healthcheck for the demo to wait on")
	}

	d := c.Services["demo"]
	if d.Build == nil {
		t.Fatal("demo is not built from the repository")
	}
	exists(t, d.Build.Context)
	dockerfile := filepath.Join(d.Build.Context, d.Build.Dockerfile)
	exists(t, dockerfile)
	if d.Command[0] != "demo" {
		t.Errorf("demo command %v: want the demo subcommand", d.Command)
	}
	brokers := flag(d.Command, "brokers")
	if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "//"+brokers) {
		t.Errorf("demo --brokers=%s is not one of kafka's advertised listeners %q", brokers, env["KAFKA_ADVERTISED_LISTENERS"])
	}
	host, port, err := net.SplitHostPort(flag(d.Command, "metrics-addr"))
	if err != nil || host != "0.0.0.0" {
		t.Errorf("demo --metrics-addr %q: want 0.0.0.0:PORT, reachable from other containers (%v)", flag(d.Command, "metrics-addr"), err)
	}
	if !slices.ContainsFunc(d.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		t.Errorf("demo ports %v do not publish the metrics port %s", d.Ports, port)
	}
}

func dependsOn(t *testing.T, n yaml.Node) []string {
	t.Helper()
	switch n.Kind {
	case 0:
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			t.Fatal(err)
		}
		var s []string
		for k := range m {
			s = append(s, k)
		}
		return s
	}
	t.Fatalf("depends_on of kind %v", n.Kind)
	return nil
}

// TestDockerfileBuildsTheCommand: the Dockerfile builds ./cmd/sluice with
// the Go version of go.mod, in a multi-stage build.
func TestDockerfileBuildsTheCommand(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	m := regexp.MustCompile(`(?m)^RUN .*go build .* (\./\S+)\s*$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("the Dockerfile has no `go build ... ./path` step")
	}
	exists(t, m[1])
	if _, err := os.Stat(filepath.Join(root, m[1], "main.go")); err != nil {
		t.Errorf("build path %s: %v", m[1], err)
	}
	if !strings.Contains(df, "COPY --from=build") {
		t.Error("the Dockerfile is not multi-stage (no COPY --from=build)")
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if v == nil || !strings.Contains(df, "FROM golang:"+string(v[1])) {
		t.Errorf("the build stage is not FROM golang:%s (go.mod's version)", v[1])
	}
}

func TestPrometheusScrapesTheDemo(t *testing.T) {
	c := loadCompose(t)
	p := c.Services["prometheus"]
	target := mount(t, p, "./deploy/prometheus/prometheus.yml")
	if got := flag(p.Command, "config.file"); got != target {
		t.Errorf("prometheus --config.file=%s, but the config is mounted at %s", got, target)
	}
	var cfg struct {
		Global        map[string]string `yaml:"global"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeYAML(t, filepath.Join(root, "deploy/prometheus/prometheus.yml"), &cfg)
	_, port, _ := net.SplitHostPort(flag(c.Services["demo"].Command, "metrics-addr"))
	want := "demo:" + port
	var found bool
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, want) && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("prometheus does not scrape %s/metrics: %+v", want, cfg.ScrapeConfigs)
	}
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy/grafana/dashboards/sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return d
}

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	g := c.Services["grafana"]
	prov := mount(t, g, "./deploy/grafana/provisioning")
	dashDir := mount(t, g, "./deploy/grafana/dashboards")
	if prov != "/etc/grafana/provisioning" {
		t.Errorf("provisioning mounted at %s; Grafana reads /etc/grafana/provisioning", prov)
	}

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	decodeYAML(t, filepath.Join(root, "deploy/grafana/provisioning/datasources/prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources %+v: want one prometheus", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	prom := c.Services["prometheus"]
	if _, ok := c.Services[u.Hostname()]; !ok || !slices.ContainsFunc(prom.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+u.Port()) }) {
		t.Errorf("datasource URL %s is not the prometheus service's port (%v)", u, prom.Ports)
	}

	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name            string            `yaml:"name"`
			Folder          string            `yaml:"folder"`
			Type            string            `yaml:"type"`
			DisableDeletion bool              `yaml:"disableDeletion"`
			AllowUIUpdates  bool              `yaml:"allowUiUpdates"`
			Options         map[string]string `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeYAML(t, filepath.Join(root, "deploy/grafana/provisioning/dashboards/sluice.yml"), &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Options["path"] != dashDir {
		t.Errorf("dashboard providers %+v: want one reading %s, where the dashboards are mounted", dp.Providers, dashDir)
	}
	home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	if rel, ok := strings.CutPrefix(home, dashDir+"/"); !ok {
		t.Errorf("home dashboard %s is not under %s", home, dashDir)
	} else {
		exists(t, filepath.Join("deploy/grafana/dashboards", rel))
	}

	d := loadDashboard(t)
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid or panels: %+v", d)
	}
	for _, p := range d.Panels {
		if p.Datasource.UID != ds.Datasources[0].UID || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q (want %q), %d queries", p.Title, p.Datasource.UID, ds.Datasources[0].UID, len(p.Targets))
		}
	}
}

var (
	metricName = regexp.MustCompile(`\bsluice_[a-zA-Z0-9_]+`)
	matcher    = regexp.MustCompile(`\b(sink|stage|client)="([^"]*)"`)
)

// TestDashboardQueriesRegisteredMetrics runs a short demo, scrapes its
// /metrics, and checks every metric the dashboard queries: it is one of
// metrics.Names() (histograms as _bucket, _sum, _count), or a franz-go
// client metric (kprom, under sluice_kafka_) that the demo exported, and the
// sink, stage and client label values the queries select exist. The dashboard must cover
// throughput, lag, latency, breaker state, limits and dead letters.
func TestDashboardQueriesRegisteredMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a short demo")
	}
	// Scrape the demo's /metrics as Prometheus would, and keep the last
	// scrape: it is taken while the demo drains, after the outage.
	var (
		mu       sync.Mutex
		families map[string]*dto.MetricFamily
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	_, err := demo.Run(context.Background(), demo.Config{
		DataDir: filepath.Join(t.TempDir(), "broker"), LogFile: filepath.Join(t.TempDir(), "demo.log"),
		Duration: 2 * time.Second, Rate: 200, MetricsAddr: "127.0.0.1:0", Interval: time.Second, Seed: 1,
		Out: io.Discard,
		Ready: func(addr string) {
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					if fams, err := scrape(addr); err == nil {
						mu.Lock()
						families = fams
						mu.Unlock()
					}
				}
			}()
		},
	})
	close(stop)
	<-done
	if err != nil && !errors.Is(err, demo.ErrFailed) { // broken promises are internal/demo's test's to report
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()

	types := map[string]dto.MetricType{}
	labels := map[string]map[string]bool{} // label name -> values seen
	for _, f := range families {
		types[f.GetName()] = f.GetType()
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == nil {
					labels[l.GetName()] = map[string]bool{}
				}
				labels[l.GetName()][l.GetValue()] = true
			}
		}
	}
	known := map[string]bool{}
	for _, n := range metrics.Names() {
		known[n] = true
	}

	used := map[string]bool{}
	for _, p := range loadDashboard(t).Panels {
		for _, q := range p.Targets {
			for _, name := range metricName.FindAllString(q.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && (known[b] || types[b] == dto.MetricType_HISTOGRAM) {
						base = b
					}
				}
				used[base] = true
				_, gathered := types[base]
				switch {
				case known[base]:
					// Registered by metrics.New; series of some (failed
					// dead-letter writes) appear only when they happen.
				case !strings.HasPrefix(base, metrics.KafkaNamespace+"_"):
					t.Errorf("panel %q queries %s, which is not in metrics.Names() nor a franz-go client metric", p.Title, name)
				case !gathered:
					t.Errorf("panel %q queries %s, a franz-go client metric the demo did not export", p.Title, name)
				}
			}
			for _, m := range matcher.FindAllStringSubmatch(q.Expr, -1) {
				if !labels[m[1]][m[2]] {
					t.Errorf("panel %q selects %s=%q, a value the demo's metrics do not have", p.Title, m[1], m[2])
				}
			}
		}
	}
	for _, want := range []string{metrics.RecordsConsumed, metrics.ConsumerLag, metrics.SinkAttemptDuration,
		metrics.BreakerState, metrics.ConcurrencyLimit, metrics.DeadLetters} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// scrape reads addr's /metrics in the text format.
func scrape(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}
