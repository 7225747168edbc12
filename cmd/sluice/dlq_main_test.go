package main

import (
	"os"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

// runMainEnv, when set, makes the test binary run main with the arguments
// after "--", so that tests see main's real exit code and output.
const runMainEnv = "SLUICE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		i := slices.Index(os.Args, "--")
		os.Args = append([]string{"sluice"}, os.Args[i+1:]...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
