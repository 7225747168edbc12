package main

import "testing"

func TestKafkaError(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "unable to commit transaction offsets: topic orders partition 1: PRODUCER_FENCED: There is a newer producer.\ntopic orders partition 0: PRODUCER_FENCED: x", want: "PRODUCER_FENCED"},
		{give: "REQUEST_TIMED_OUT: The request timed out.", want: "REQUEST_TIMED_OUT"},
		{give: "context deadline exceeded", want: "context deadline exceeded"},
		{give: "a very long error without a Kafka error code in it that goes on and on and on past eighty characters", want: "a very long error without a Kafka error code in it that goes on and on and on pa..."},
	}
	for _, tt := range tests {
		if got := kafkaError(tt.give); got != tt.want {
			t.Errorf("kafkaError(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
