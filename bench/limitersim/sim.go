package main

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/backpressure"
)

// limiter is what the simulator drives: the package's limiters (through
// TryAcquire, since a discrete-event simulation cannot block) and the
// reference limiters of ref.go.
type limiter interface {
	TryAcquire() bool
	Release(latency time.Duration, o backpressure.Signal)
	Limit() int
	InFlight() int
}

// vclock is the virtual clock handed to the limiters.
type vclock struct {
	base time.Time
	now  time.Duration
}

func (c *vclock) Now() time.Time { return c.base.Add(c.now) }

// NewTimer is never called: the limiters start no timers.
func (c *vclock) NewTimer(time.Duration) sluice.Timer { panic("limiter started a timer") }

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any     { old := *h; e := old[len(old)-1]; *h = old[:len(old)-1]; return e }
func (h *eventHeap) add(e event)  { heap.Push(h, e) }
func (h *eventHeap) take() event  { return heap.Pop(h).(event) }
func (h eventHeap) empty() bool   { return len(h) == 0 }
func (s *sim) at(d time.Duration, fn func()) {
	s.seq++
	s.events.add(event{at: d, seq: s.seq, fn: fn})
}

// request is one unit of work: it arrives (open load) or is issued by a
// client (closed load), waits for a limiter slot, then calls the downstream.
type request struct {
	arrival  time.Duration
	start    time.Duration // call start, once admitted
	finished bool
}

// sim is one run of one limiter in one scenario.
type sim struct {
	sc     *scenario
	lim    limiter
	clock  *vclock
	rng    *rand.Rand
	events eventHeap
	seq    uint64

	servers int     // downstream capacity now
	scale   float64 // service-time multiplier now
	busy    int
	dsq     []*request // downstream FIFO queue
	dsHead  int

	waitq    []*request // requests waiting for a limiter slot
	waitHead int

	cpuBusy int        // caller cores in use
	cpuq    []*request // calls waiting for a caller core, FIFO
	cpuHead int

	res *result
}

// result is what one run measured.
type result struct {
	limiter   string
	ok, shed  int // successful calls after the measuring start; requests dropped at their deadline
	timeouts  int
	lat       []float64 // call latency of successes after the measuring start, ms
	e2e       []float64 // arrival to completion of successes, ms
	trace     []tracePoint
	decisions []backpressure.Decision
	// demand: per 100ms bucket after warm-up, the highest in-flight+waiting
	// and the highest limit.
	demandRatio float64
}

func (r *result) t0() time.Time { return time.Unix(1_700_000_000, 0) }

type tracePoint struct {
	t        time.Duration
	limit    int
	inFlight int
}

func run(sc *scenario, name string, mk func(sluice.Clock, uint64) limiter, seed uint64) *result {
	clk := &vclock{base: time.Unix(1_700_000_000, 0)}
	s := &sim{
		sc: sc, clock: clk,
		rng:     rand.New(rand.NewPCG(seed, 0x5eed)),
		servers: sc.servers, scale: 1,
		res: &result{limiter: name},
	}
	s.lim = mk(clk, seed)
	if dl, ok := s.lim.(interface {
		decisions() []backpressure.Decision
	}); ok {
		defer func() { s.res.decisions = dl.decisions() }()
	}
	for _, ch := range sc.changes {
		ch := ch
		s.at(ch.at, func() {
			if ch.servers > 0 {
				s.servers = ch.servers
				s.startService()
			}
			if ch.scale > 0 {
				s.scale = ch.scale
			}
		})
	}
	if sc.clients > 0 {
		for i := 0; i < sc.clients; i++ {
			s.enqueue(&request{})
		}
		s.pump()
	} else {
		s.at(0, s.arrive)
	}
	s.at(0, s.sampleTrace)

	var bucketDemand, bucketLimit int
	bucketEnd := sc.warmup + 100*time.Millisecond
	for !s.events.empty() {
		e := s.events.take()
		if e.at > sc.duration {
			break
		}
		for e.at >= bucketEnd && bucketEnd <= sc.duration {
			if bucketDemand > 0 {
				s.res.demandRatio = math.Max(s.res.demandRatio, float64(bucketLimit)/float64(bucketDemand))
			}
			bucketDemand, bucketLimit = 0, 0
			bucketEnd += 100 * time.Millisecond
		}
		clk.now = e.at
		e.fn()
		if clk.now >= sc.warmup {
			bucketDemand = max(bucketDemand, s.lim.InFlight()+len(s.waitq)-s.waitHead)
			bucketLimit = max(bucketLimit, s.lim.Limit())
		}
	}
	if sc.clients == 0 {
		// Open load: requests still waiting at the end count as shed.
		for _, r := range s.waitq[s.waitHead:] {
			if r.arrival >= sc.warmup {
				s.res.shed++
			}
		}
	}
	return s.res
}

// arrive generates the open load: Poisson arrivals at the rate of the
// current phase of an on/off pattern.
func (s *sim) arrive() {
	now := s.clock.now
	s.enqueue(&request{arrival: now})
	s.pump()
	rate, phaseEnd := s.sc.rateAt(now)
	next := now + time.Duration(s.rng.ExpFloat64()/rate*float64(time.Second))
	if next > phaseEnd {
		next = phaseEnd // memoryless: redraw at the phase boundary
		s.at(next, func() { s.nextArrival() })
		return
	}
	s.at(next, s.arrive)
}

func (s *sim) nextArrival() {
	now := s.clock.now
	rate, phaseEnd := s.sc.rateAt(now)
	next := now + time.Duration(s.rng.ExpFloat64()/rate*float64(time.Second))
	if next > phaseEnd {
		s.at(phaseEnd, s.nextArrival)
		return
	}
	s.at(next, s.arrive)
}

func (s *sim) enqueue(r *request) {
	r.arrival = s.clock.now
	s.waitq = append(s.waitq, r)
}

// pump admits waiting requests while the limiter has room.
func (s *sim) pump() {
	for s.waitHead < len(s.waitq) {
		r := s.waitq[s.waitHead]
		if s.sc.deadline > 0 && s.clock.now-r.arrival > s.sc.deadline {
			s.popWait()
			if r.arrival >= s.sc.warmup {
				s.res.shed++
			}
			continue
		}
		if !s.lim.TryAcquire() {
			return
		}
		s.popWait()
		s.call(r)
	}
}

func (s *sim) popWait() {
	s.waitq[s.waitHead] = nil
	s.waitHead++
	if s.waitHead > 4096 && s.waitHead*2 > len(s.waitq) {
		s.waitq = append(s.waitq[:0], s.waitq[s.waitHead:]...)
		s.waitHead = 0
	}
}

func (s *sim) call(r *request) {
	r.start = s.clock.now
	s.at(r.start+s.sc.timeout, func() {
		if !r.finished {
			s.finish(r, backpressure.Overload)
		}
	})
	s.dsq = append(s.dsq, r)
	s.startService()
}

// startService moves queued calls onto free servers.
func (s *sim) startService() {
	for s.busy < s.servers && s.dsHead < len(s.dsq) {
		r := s.dsq[s.dsHead]
		s.dsq[s.dsHead] = nil
		s.dsHead++
		s.busy++
		st := time.Duration(s.sc.service(s.rng) * s.scale * float64(time.Millisecond))
		s.at(s.clock.now+st, func() {
			s.busy--
			if !r.finished {
				if s.sc.cores > 0 {
					s.cpuq = append(s.cpuq, r)
					s.startCPU()
				} else {
					s.finish(r, backpressure.Success)
				}
			}
			s.startService()
		})
	}
	if s.dsHead > 4096 && s.dsHead*2 > len(s.dsq) {
		s.dsq = append(s.dsq[:0], s.dsq[s.dsHead:]...)
		s.dsHead = 0
	}
}

// startCPU moves calls waiting for the caller's CPU onto free cores.
func (s *sim) startCPU() {
	for s.cpuBusy < s.sc.cores && s.cpuHead < len(s.cpuq) {
		r := s.cpuq[s.cpuHead]
		s.cpuq[s.cpuHead] = nil
		s.cpuHead++
		s.cpuBusy++
		s.at(s.clock.now+s.sc.cpu, func() {
			s.cpuBusy--
			if !r.finished {
				s.finish(r, backpressure.Success)
			}
			s.startCPU()
		})
	}
	if s.cpuHead > 4096 && s.cpuHead*2 > len(s.cpuq) {
		s.cpuq = append(s.cpuq[:0], s.cpuq[s.cpuHead:]...)
		s.cpuHead = 0
	}
}

func (s *sim) finish(r *request, o backpressure.Signal) {
	r.finished = true
	now := s.clock.now
	lat := now - r.start
	s.lim.Release(lat, o)
	if r.start >= s.sc.measureFrom() {
		if o == backpressure.Success {
			s.res.ok++
			s.res.lat = append(s.res.lat, ms(lat))
			s.res.e2e = append(s.res.e2e, ms(now-r.arrival))
		} else {
			s.res.timeouts++
		}
	}
	if s.sc.clients > 0 {
		s.enqueue(&request{})
	}
	s.pump()
}

func (s *sim) sampleTrace() {
	s.res.trace = append(s.res.trace, tracePoint{t: s.clock.now, limit: s.lim.Limit(), inFlight: s.lim.InFlight()})
	s.at(s.clock.now+10*time.Millisecond, s.sampleTrace)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
