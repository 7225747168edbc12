package consumer_test

import (
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func scramAuth() sasl.Mechanism {
	return scram.Auth{User: "scram-user", Pass: "scram-pass"}.AsSha256Mechanism()
}
