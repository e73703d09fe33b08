# sipanchor — see README.md.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GO ?= go

.PHONY: build run test unit e2e bench fuzz lint tidy-check clean

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/sipanchor ./cmd/sipanchor

# Serve on the embedded defaults (SIP udp+tcp :5060, API 127.0.0.1:8080).
run: build
	./bin/sipanchor serve

# Everything CI runs: lint, then all tests (unit and end-to-end) with -race.
test: lint
	$(GO) test -race -count=1 -timeout 20m ./...

# Unit tests only, quick: under -short the end-to-end tests in cmd/sipanchor
# skip and the sipanchor binary is not built.
unit:
	$(GO) test -race -count=1 -short ./...

# The end-to-end tests alone (they need sipp, kamailio and rtpengine).
e2e:
	$(GO) test -race -count=1 -timeout 20m ./cmd/sipanchor/

# Not a test: numbers, reported in the README with how they were taken.
# Go micro-benchmarks, the RTP relay against its floors (relaybench), and
# SIP at 1,000 calls/s with media anchored (needs sip-tester).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) build -o bin/relaybench ./cmd/relaybench
	./bin/relaybench -steps 50,100,250,500,750 $$(command -v rtpengine >/dev/null && echo -ng)
	./scripts/bench-sip.sh 12000 1000 2000
	./scripts/bench-ramp.sh 200,400,600,800,1000,1200,1600 10 2000

# Each fuzz target for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

tidy-check:
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

clean:
	rm -rf bin
