package health_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sluice-go/sluice/consumer"
	"github.com/sluice-go/sluice/health"
	"github.com/sluice-go/sluice/pipeline"
)

func ExampleReadiness() {
	// A *consumer.Consumer is a StatusSource; here a fixed status stands in.
	st := fixedStatus{Running: true, Joined: true,
		Assigned: []pipeline.TopicPartition{{Topic: "orders", Partition: 0}},
		Stalled:  []pipeline.TopicPartition{{Topic: "orders", Partition: 0}}}
	rec := httptest.NewRecorder()
	health.Readiness(st).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	fmt.Print(rec.Code, "\n", rec.Body.String())
	// Output:
	// 200
	// ready
	// running: true, joined: true
	// assigned (1): orders/0
	// paused (0):
	// stalled (1): orders/0 (does not affect readiness)
	// unsettled: 0, buffered: 0
}

var _ health.StatusSource = (*consumer.Consumer)(nil)

func ExampleNewServer() {
	srv, err := health.NewServer("127.0.0.1:0", health.Status(fixedStatus{Running: true, Joined: true}))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	defer func() {
		srv.Close()
		<-done
	}()

	resp, err := http.Get("http://" + srv.Addr() + health.PathReadiness)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.SplitN(string(body), "\n", 2)[0])
	// Output: 200 ready
}
