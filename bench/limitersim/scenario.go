package main

import (
	"math"
	"math/rand/v2"
	"time"
)

// Downstream model shared by all scenarios: c servers, FIFO queue, service
// time lognormal with mean 10ms and sigma 0.5 (median 8.8ms, p99 28.2ms).
const (
	serviceMeanMS = 10.0
	serviceSigma  = 0.5
)

var serviceMu = math.Log(serviceMeanMS) - serviceSigma*serviceSigma/2

func lognormal(r *rand.Rand) float64 { return math.Exp(serviceMu + serviceSigma*r.NormFloat64()) }

// unloadedP99 is the p99 latency of one call with no queueing: the p99 of the
// service time.
var unloadedP99 = math.Exp(serviceMu + 2.3263478740408408*serviceSigma)

// change alters the downstream at a point in virtual time.
type change struct {
	at      time.Duration
	servers int     // new server count, 0 = unchanged
	scale   float64 // new service-time multiplier, 0 = unchanged
}

type ratePhase struct {
	dur  time.Duration
	rate float64 // arrivals per second
}

type scenario struct {
	name, title string
	servers     int           // servers at start
	clients     int           // closed load: this many clients, no think time; 0 = open load
	phases      []ratePhase   // open load: repeating on/off pattern
	deadline    time.Duration // open load: a request waiting longer than this for a slot is shed
	timeout     time.Duration // per-call timeout: the call is released as Overload
	duration    time.Duration
	warmup      time.Duration // measuring starts here (or at the change)
	changeAt    time.Duration // 0: no change
	changes     []change
	idealBefore float64
	idealAfter  float64
	service     func(*rand.Rand) float64 // ms at scale 1
	// The caller's CPU: after the downstream answers, a call needs cpu of
	// the caller's CPU time on one of cores (FIFO), as a consumer's
	// goroutines need the scheduler, timers and the pipeline. 0 cores: the
	// caller's CPU is not modelled.
	cores int
	cpu   time.Duration
	// fixed are the fixed limits compared; default 8 to 128.
	fixed []int
	// coldStart: the scenario's target is how soon the limit reaches
	// 0.9 x idealAfter from the start (no warm-up is excluded).
	coldStart bool
}

func (sc *scenario) measureFrom() time.Duration {
	if sc.changeAt > 0 {
		return sc.changeAt
	}
	return sc.warmup
}

// rateAt returns the arrival rate at t and the end of its phase.
func (sc *scenario) rateAt(t time.Duration) (float64, time.Duration) {
	var cycle time.Duration
	for _, p := range sc.phases {
		cycle += p.dur
	}
	start := t - t%cycle
	for _, p := range sc.phases {
		if t < start+p.dur {
			return p.rate, start + p.dur
		}
		start += p.dur
	}
	return sc.phases[0].rate, start
}

// capacity is the downstream's throughput with c servers at scale 1.
func capacity(c int) float64 { return float64(c) / (serviceMeanMS / 1000) }

func scenarios(scale float64) []*scenario {
	d := func(s float64) time.Duration { return time.Duration(s * scale * float64(time.Second)) }
	base := func() scenario {
		return scenario{
			servers: 32, clients: 256, timeout: 100 * time.Millisecond,
			duration: d(30), warmup: d(5), service: lognormal,
			idealBefore: 32, idealAfter: 32,
		}
	}
	steady := base()
	steady.name, steady.title = "steady", "Steady state: 32 servers, closed load of 256 clients"

	slow := base()
	slow.name, slow.title = "latency-x3", "Service time x3 at 10s, same 32 servers (ideal stays 32)"
	slow.changeAt = d(10)
	slow.changes = []change{{at: d(10), scale: 3}}

	drop := base()
	drop.name, drop.title = "capacity-drop", "Capacity drop 32 -> 8 servers at 10s"
	drop.changeAt = d(10)
	drop.changes = []change{{at: d(10), servers: 8}}
	drop.idealAfter = 8

	rec := base()
	rec.name, rec.title = "recovery", "Capacity recovery 8 -> 32 servers at 10s"
	rec.servers, rec.idealBefore = 8, 8
	rec.changeAt = d(10)
	rec.changes = []change{{at: d(10), servers: 32}}

	burst := base()
	burst.name, burst.title = "bursty", "Bursty open load: 2x capacity for 100ms, 0.4x for 400ms; shed after 500ms waiting"
	burst.clients = 0
	burst.deadline = 500 * time.Millisecond
	burst.phases = []ratePhase{{400 * time.Millisecond, 0.4 * capacity(32)}, {100 * time.Millisecond, 2 * capacity(32)}}

	caller := base()
	caller.name, caller.title = "caller-bound", "Caller-bound: 4 clients, 32 servers (limit must track demand)"
	caller.clients = 4

	wide := base()
	wide.name, wide.title = "latency-x3-wide", "Service time x3 and servers x3 at 10s: same throughput, ideal 32 -> 96 (informational)"
	wide.changeAt = d(10)
	wide.changes = []change{{at: d(10), scale: 3, servers: 96}}
	wide.idealAfter = 96

	// A downstream of unlimited capacity and a caller with large demand:
	// the consumer of FanOut(64) x 12 partitions whose limiter, live,
	// held a 2ms sink to a tenth of its throughput. The ideal limit is the
	// demand.
	unlimited := base()
	unlimited.name, unlimited.title = "unlimited", "Unlimited capacity, demand of 768 clients (the limit must reach the demand)"
	unlimited.servers, unlimited.clients = 1_000_000, 768
	unlimited.duration, unlimited.warmup = d(10), d(2)
	unlimited.idealBefore, unlimited.idealAfter = 768, 768
	unlimited.fixed = []int{128, 256, 512, 768, 1024}
	unlimited.coldStart = true

	// The same caller with a CPU of its own: 2 cores, 50us of CPU a call
	// after an unlimited downstream's 10ms. Throughput saturates at 40,000
	// calls a second, reached at 400 in flight; above, calls queue for the
	// CPU and latency rises with concurrency while throughput does not.
	cpu := unlimited
	cpu.name, cpu.title = "cpu-bound", "Unlimited capacity, 768 clients, a caller CPU of 2 cores at 50us a call (knee at 400)"
	cpu.cores, cpu.cpu = 2, 50*time.Microsecond
	cpu.idealBefore, cpu.idealAfter = 400, 400
	cpu.coldStart = false

	return []*scenario{&steady, &slow, &drop, &rec, &burst, &caller, &wide, &unlimited, &cpu}
}

// bestFixed are the fixed limits that the robustness runs try for the
// best fixed goodput of a target that compares with it.
func (sc *scenario) bestFixed() []int {
	switch sc.name {
	case "steady":
		return []int{16, 32, 64}
	case "unlimited":
		return []int{768, 1024}
	case "cpu-bound":
		return []int{512, 1024}
	}
	return nil
}

// fixedLimits are the fixed limits compared in sc.
func (sc *scenario) fixedLimits() []int {
	if len(sc.fixed) > 0 {
		return sc.fixed
	}
	return []int{8, 16, 32, 64, 128}
}
